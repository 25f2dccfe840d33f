"""Text encoders: plbert, xphonebert, phoneme_embedding (issue 14; in progress)."""
