"""Step 3c: a weight-sharing supernet over a search space (train once, score any candidate
with inherited weights, fine-tune a found model from them)."""
