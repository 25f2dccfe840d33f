"""Phoneme symbols: the eSpeak NG IPA table text encoders and datasets share (issue 14; in progress)."""
