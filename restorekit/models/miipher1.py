"""Miipher-1 feature cleaner and restorer (issue 14; in progress)."""
