"""canet.training.methods."""
