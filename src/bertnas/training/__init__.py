"""Training: AdaBERT's losses, the search and retraining loops, checkpoints."""
