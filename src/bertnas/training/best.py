"""The best epoch's weights, kept while a stage trains and checkpointed with it, so that a resumed run keeps the
epoch an uninterrupted one would (AdaBERT's further training, NAS-BERT's and the teacher's fine-tuning)."""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ..errors import BertnasError


class BestEpoch:
    """The best score offered so far, the stage's record of it and a copy of the weights it was scored with.

    The first offer is always kept; after it only a strictly greater score, so on a tie the earlier epoch stays.
    The checkpoint extras keep the names each stage gave them before this class (``state_key``, ``record_key``,
    and ``score_key``, or None when the stage saved no score and :meth:`restore` recomputes it from the record),
    so checkpoints of runs already going resume as they were.
    """

    def __init__(self, record_key: str = "best", score_key: str | None = None, state_key: str = "best_state") -> None:
        self.record_key, self.score_key, self.state_key = record_key, score_key, state_key
        self.score: Any = None
        self.record: Any = None
        self.state: dict[str, torch.Tensor] | None = None

    @property
    def kept(self) -> bool:
        """Whether an offer has been kept (or restored)."""
        return self.state is not None

    def offer(self, score: Any, record: Any, module: torch.nn.Module) -> bool:
        """Keep ``record`` and a deep copy of ``module``'s weights if ``score`` beats the best so far; returns
        whether it did. A copy, not the live tensors, since training goes on changing them."""
        if self.kept and not score > self.score:
            return False
        self.score, self.record, self.state = score, record, copy.deepcopy(module.state_dict())
        return True

    def extras(self) -> dict[str, Any]:
        """What ``run_epochs(extra=...)`` checkpoints, under the stage's key names."""
        out = {self.state_key: self.state, self.record_key: self.record}
        if self.score_key is not None:
            out[self.score_key] = self.score
        return out

    def restore(self, extra: dict, score_of: Callable[[Any], Any]) -> BestEpoch:
        """Take the best epoch from a resumed checkpoint's extras (``Resumable.extra``); no extras (a fresh
        start) leave this as it is. ``score_of(record)`` gives the score when it was not saved (no ``score_key``,
        or a checkpoint written before it was). Returns self."""
        if not extra:
            return self
        try:
            self.state, self.record = extra[self.state_key], extra[self.record_key]
            self.score = extra[self.score_key] if self.score_key in extra else score_of(self.record)
        except KeyError as exc:
            raise BertnasError(f"the checkpoint being resumed has no best epoch (no {exc}): it was written by another "
                               "version of bertnas; delete it, or pass --no-resume, to start the stage over") from None
        return self

    def load_into(self, module: torch.nn.Module) -> None:
        """Load the kept weights into ``module`` (the stage's result)."""
        if not self.kept:
            raise BertnasError("no epoch was trained, so there are no best weights to keep: train for at least one epoch")
        module.load_state_dict(self.state)


__all__ = ["BestEpoch"]
