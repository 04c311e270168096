"""canet.metrics."""
