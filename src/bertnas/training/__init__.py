"""Shared training pieces: losses (task, KD, hierarchical KD), the resumable epoch loop, checkpoints, autocast,
evaluation. Each method supplies its own steps (``adabert.searcher``, ``adabert.retrain``)."""
