"""mimi_resynthesis enhancer (issue 15; in progress)."""
