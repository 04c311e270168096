"""canet.report."""
