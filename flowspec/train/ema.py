"""Exponential moving average of the weights (Polyak & Juditsky 1992; used by Glow and Flow++).

After every optimizer step: ``theta_ema <- d * theta_ema + (1 - d) * theta`` with decay ``d``,
warmed up as ``d_t = min(d, (1 + t) / (10 + t))`` so that early averages are not dominated by the
random init. Buffers (actnorm's ``initialized`` flag, fixed permutations) are copied, not averaged.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.model = model
        self.decay = decay
        self.updates = 0
        self.shadow = {name: value.detach().clone() for name, value in model.state_dict().items()}
        self._parameters = {name for name, _ in model.named_parameters()}

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, value in self.model.state_dict().items():
            shadow = self.shadow[name]
            if name in self._parameters and value.is_floating_point():
                shadow.mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                shadow.copy_(value)

    @torch.no_grad()
    def reset(self) -> None:
        """Copy the model's current weights (after the data-dependent init)."""
        for name, value in self.model.state_dict().items():
            self.shadow[name].copy_(value)

    def state_dict(self) -> dict:
        return {name: value.clone() for name, value in self.shadow.items()}

    def load_state_dict(self, state: dict, updates: int) -> None:
        for name, value in state.items():
            self.shadow[name].copy_(value)
        self.updates = updates

    @contextlib.contextmanager
    def applied(self):
        """Swap the averaged weights into the model for the ``with`` block, then swap back."""
        backup = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        self.model.load_state_dict(self.shadow)
        try:
            yield self.model
        finally:
            self.model.load_state_dict(backup)
