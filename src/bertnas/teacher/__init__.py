"""Teacher side: loading, fine-tuning, cached knowledge (logits, per-layer features) and probes."""
