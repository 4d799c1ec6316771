"""Names the training package used to export from one module, kept importable for existing callers.

New code imports from the small modules: ``distill`` (targets, heads, the loss of a depth), ``evaluation``,
``checkpoints``, ``amp`` (autocast) and ``loop`` (the shared resumable epoch loop, seeding).
"""
from .amp import autocast
from .checkpoints import load_checkpoint, save_checkpoint
from .distill import KDHeads, Targets, TargetScale, depth_loss
from .evaluation import evaluate
from .loop import epoch_generators

__all__ = ["KDHeads", "TargetScale", "Targets", "autocast", "depth_loss", "epoch_generators", "evaluate",
           "load_checkpoint", "save_checkpoint"]
