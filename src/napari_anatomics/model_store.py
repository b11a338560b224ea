"""Model folders: save, load safely, list.

A model folder holds ``config.json`` (:class:`~.model_config.ModelConfig`),
``weights.pt`` (a plain state dict, loaded with ``weights_only=True``: model
files travel between labs and must never run code) and ``history.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .model_config import ModelConfig


@dataclass
class TrainedModel:
    """A network ready for prediction, with the config that explains it.

    Calling it maps a normalized float batch ``(B, 1, Z, Y, X)`` (Z = 1 for
    2D models is fine; 2D models run slice by slice) to probabilities
    ``(B, C, Z, Y, X)``: softmax over classes for semantic models, sigmoid
    per channel for instance models (channel order = ``config.targets``).
    """

    net: torch.nn.Module
    config: ModelConfig
    device: torch.device
    folder: Path | None = None

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities for a normalized batch (see class docstring)."""
        batch = batch.to(self.device, non_blocking=True)
        if self.config.spatial_dims == 2:
            b, c, z, y, x = batch.shape
            flat = batch.permute(0, 2, 1, 3, 4).reshape(b * z, c, y, x)
            logits = self.net(flat)
            logits = logits.reshape(b, z, -1, y, x).permute(0, 2, 1, 3, 4)
        else:
            logits = self.net(batch)
        if self.config.task == "semantic":
            return torch.softmax(logits.float(), dim=1)
        return torch.sigmoid(logits.float())
