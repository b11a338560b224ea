"""Masked losses and scores: only painted voxels count.

* semantic: cross-entropy + soft Dice over the classes;
* instance: BCE + soft Dice on the foreground and boundary maps, plus MSE
  on the sigmoid distance map when there is one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _soft_dice(prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Dice per channel over the masked voxels; prob/target (B, C, ...)."""
    dims = (0, *range(2, prob.ndim))
    m = mask.unsqueeze(1).to(prob.dtype)
    inter = (prob * target * m).sum(dims)
    denom = ((prob + target) * m).sum(dims)
    return 1.0 - (2.0 * inter + 1.0) / (denom + 1.0)


def semantic_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked cross-entropy + Dice.

    Parameters
    ----------
    logits : tensor (B, K+1, ...)
    target : int64 tensor (B, ...)
        Class indices.
    mask : bool tensor (B, ...)
        Voxels that count.
    """
    logits = logits.float()
    n = mask.sum().clamp(min=1)
    ce = (F.cross_entropy(logits, target, reduction="none") * mask).sum() / n
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).float()
    dice = _soft_dice(torch.softmax(logits, 1), onehot, mask)
    return ce + dice[1:].mean() if logits.shape[1] > 1 else ce + dice.mean()


def instance_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked BCE + Dice on foreground/boundary (+ MSE on a distance channel).

    Parameters
    ----------
    logits : tensor (B, C, ...)
        C = 2 (foreground, boundary) or 3 (..., distance).
    target : float tensor (B, C, ...)
    mask : bool or float tensor (B, ...)
        Voxels that count, or per-voxel loss weights (0 = not counted).
    """
    logits = logits.float()
    m = mask.unsqueeze(1).float()
    n = m.sum().clamp(min=1)
    bc_logits, bc_target = logits[:, :2], target[:, :2]
    bce = (F.binary_cross_entropy_with_logits(bc_logits, bc_target, reduction="none") * m).sum()
    loss = bce / (2 * n) + _soft_dice(torch.sigmoid(bc_logits), bc_target, mask).mean()
    if logits.shape[1] > 2:
        err = (torch.sigmoid(logits[:, 2:3]) - target[:, 2:3]) ** 2
        loss = loss + (err * m).sum() / n
    return loss


@torch.no_grad()
def dice_score(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, task: str) -> float:
    """Hard Dice over masked voxels: foreground (instance) or mean over classes (semantic)."""
    mask = mask > 0
    if task == "semantic":
        pred = logits.argmax(1)
        scores = []
        for c in range(1, logits.shape[1]):
            p, t = (pred == c) & mask, (target == c) & mask
            denom = int(p.sum() + t.sum())
            if denom:
                scores.append(2.0 * int((p & t).sum()) / denom)
        return float(sum(scores) / len(scores)) if scores else 1.0
    p = (logits[:, 0] > 0) & mask
    t = (target[:, 0] > 0.5) & mask
    denom = int(p.sum() + t.sum())
    return 2.0 * int((p & t).sum()) / denom if denom else 1.0
