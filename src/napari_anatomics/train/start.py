"""What a training run starts from: a run to resume, or an earlier model to fine-tune.

:func:`check_resumable` refuses to resume a model folder trained with another
network, window or downsampling; :func:`init_from` loads an earlier model's
weights and normalization into a new run (``init_from``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..models.config import ModelConfig
from ..models.store import CHECKPOINT_NAME, load_model


def check_resumable(out_dir: Path, mconfig: ModelConfig) -> None:
    """Raise unless ``out_dir`` holds a checkpoint of a run with ``mconfig``'s network.

    Parameters
    ----------
    out_dir : Path
        The model folder to resume.
    mconfig : ModelConfig
        The config of the run that resumes it.

    Raises
    ------
    FileNotFoundError
        When there is no checkpoint.
    ValueError
        When the architecture, targets, window or downsampling differ.
    """
    if not (out_dir / CHECKPOINT_NAME).exists():
        raise FileNotFoundError(f"nothing to resume: {out_dir} has no {CHECKPOINT_NAME}")
    saved = ModelConfig.load(out_dir)
    for key in ("architecture", "targets", "window", "downsample"):
        if getattr(saved, key) != getattr(mconfig, key):
            raise ValueError(
                f"cannot resume {out_dir}: it was trained with {key} {getattr(saved, key)}, "
                f"this run asks for {getattr(mconfig, key)}; resume with the same settings"
            )


def init_from(net: torch.nn.Module, mconfig: ModelConfig, folder: Path) -> None:
    """Load an earlier model's weights (fine-tuning), keeping its normalization.

    Parameters
    ----------
    net : torch.nn.Module
        The new run's network (same architecture and outputs).
    mconfig : ModelConfig
        The new run's config: takes the earlier normalization and records ``init_from``.
    folder : Path
        The earlier model's folder.

    Raises
    ------
    ValueError
        When the earlier network differs.
    """
    earlier = load_model(folder, device="cpu")
    old, new = earlier.config.architecture, mconfig.architecture
    if old != new or earlier.config.targets != mconfig.targets:
        raise ValueError(
            f"cannot fine-tune from {folder}: its network ({old.get('name')}, outputs "
            f"{earlier.config.targets}) differs from this run's ({new.get('name')}, outputs "
            f"{mconfig.targets}); use the same task, architecture, width, depth and window"
        )
    net.load_state_dict(earlier.net.state_dict())
    mconfig.normalization = dict(earlier.config.normalization)
    mconfig.training["init_from"] = str(folder)
