"""Transcripts for datasets: LibriTTS-R, VCTK, name,text CSV, demo sentences (issue 14; in progress)."""
