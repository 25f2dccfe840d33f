"""Miipher-1 stage 1 trainer (issue 14; in progress)."""
