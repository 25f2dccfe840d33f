"""Speaker encoders: resemblyzer, ecapa (issue 14; in progress)."""
