"""Mixed precision for the student's search and training steps."""
from __future__ import annotations

import torch


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA and CPU when asked (``--amp``); a no-op elsewhere. The KD losses cast their
    inputs to float32 themselves (``losses.distill_loss``), so distillation stays in fp32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=enabled and device.type in ("cuda", "cpu"))
