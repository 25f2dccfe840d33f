"""Mimi codec trainer (issue 15; in progress)."""
