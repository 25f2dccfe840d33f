"""Codec losses: semantic distillation, commitment (issue 15; in progress)."""
