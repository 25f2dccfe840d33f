"""Placeholder: filled in by the FINALLY-family work (issue 13)."""
