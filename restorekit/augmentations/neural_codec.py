"""neural_codec degradation (issue 15; in progress)."""
