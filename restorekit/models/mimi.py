"""Mimi neural speech codec (issue 15; in progress)."""
