"""canet.training."""
