"""Training, checkpoints, reconstruction, animation, benchmarking and reports."""
