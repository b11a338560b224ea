"""Model folders: save, load safely, list.

A model folder holds ``config.json`` (:class:`~.config.ModelConfig`),
``weights.pt`` (a plain state dict, loaded with ``weights_only=True``: model
files travel between labs and must never run code) and ``history.csv``. A model
imported from a BioImage.IO package made elsewhere keeps the package's
TorchScript archive as ``weights.pt`` (architecture ``"torchscript"``), read
with ``torch.jit.load``: nothing unpickled, no Python source run either.
"""

from __future__ import annotations

import csv
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.files import atomic_path
from ..core.numerics import non_finite_tensors
from . import TORCHSCRIPT, build_network, run_network
from .config import ModelConfig


@dataclass
class TrainedModel:
    """A network ready for prediction, with the config that explains it.

    Calling it maps a normalized float batch ``(B, 1, Z, Y, X)`` (Z = 1 for
    2D models is fine; 2D models run slice by slice) to probabilities
    ``(B, C, Z, Y, X)``: softmax over classes for semantic models, sigmoid
    per channel for instance models (channel order = ``config.targets``).
    An imported network gives its probabilities itself.
    """

    net: torch.nn.Module
    config: ModelConfig
    device: torch.device
    folder: Path | None = None

    @torch.no_grad()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities for a normalized batch (see class docstring)."""
        batch = batch.to(self.device, non_blocking=True)
        logits = run_network(self.net, batch, self.config.spatial_dims)
        if getattr(self.net, "outputs_probabilities", False):
            return logits.float()
        if self.config.task == "semantic":
            return torch.softmax(logits.float(), dim=1)
        return torch.sigmoid(logits.float())


WEIGHTS_NAME = "weights.pt"
HISTORY_NAME = "history.csv"
CHECKPOINT_NAME = "checkpoint.pt"
#: Columns of ``history.csv``.
#: ``precision``: the dtype the step ran in; ``skipped``: non-finite steps so far (never applied).
HISTORY_FIELDS = (
    "iteration", "loss", "lr", "it_s", "val_dice", "seconds", "precision", "skipped"
)


@dataclass
class ModelInfo:
    """One entry of the model registry (see :func:`list_models`)."""

    name: str
    task: str
    classes: list[str]
    created: str
    iterations: int
    path: Path

    def describe(self) -> str:
        """One line for lists and drop-downs."""
        return (
            f"{self.name}: {self.task} ({', '.join(self.classes)}), "
            f"{self.iterations} iterations, {self.created or 'date unknown'}"
        )


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(obj, tmp)


def _safe_load(path: Path, device: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a clear refusal of pickled objects.

    A file that carries pickled Python objects (anything but tensors, numbers,
    strings and containers of them) is refused, saying why: unpickling it could
    run any code. PyTorch's own hint to load it with ``weights_only=False`` is
    deliberately not passed on. A damaged or cut-short file is reported as such.
    """
    import errno
    import re

    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" not in text:
            raise ValueError(
                f"{path}: is damaged or not a weight file ({text.splitlines()[0][:80]}); "
                "copy the model folder again"
            ) from None
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = (
            f"it carries a reference to the Python object {found.group(1)}"
            if found
            else "it is not a plain weight file (it holds pickle instructions beyond "
            "tensors and numbers, or is damaged)"
        )
        raise ValueError(
            f"{path} was refused: {what}, and loading such a file can run any code on "
            "this computer; napari-anatomics loads only plain weight files: ask whoever "
            "shared the model for the model folder as napari-anatomics saved it"
        ) from None
    except (RuntimeError, EOFError, KeyError, OSError) as err:  # KeyError: not a pickle at all
        if isinstance(err, RuntimeError) and not any(
            marker in str(err) for marker in ("zip archive", "PytorchStreamReader", "EOF")
        ):
            raise
        if isinstance(err, OSError) and err.errno not in (None, errno.EINVAL):
            raise  # missing, unreadable...: told as such by the caller
        raise ValueError(
            f"{path}: is damaged or incomplete (an interrupted copy?); copy the model "
            "folder again"
        ) from None


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a training checkpoint atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save(state, path)
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (weights only, no code)."""
    return _safe_load(Path(path), device)


def _model_folder(folder: str | Path, config: ModelConfig) -> Path:
    """The folder to save into, created; the model is named after it unless named."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not config.name:
        config.name = folder.name
    return folder


def save_model(
    folder: str | Path,
    net: torch.nn.Module,
    config: ModelConfig,
    history: Sequence[dict[str, Any]] = (),
) -> Path:
    """Write a model folder: ``weights.pt``, ``config.json``, ``history.csv``.

    Parameters
    ----------
    folder : str or Path
        Created if missing. Each file is written to a temporary name and renamed.
    net : torch.nn.Module
    config : ModelConfig
    history : sequence of dict
        One row per iteration (keys from :data:`HISTORY_FIELDS`).

    Returns
    -------
    Path
        The folder.
    """
    folder = _model_folder(folder, config)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    broken = non_finite_tensors(state)
    if broken:
        raise ValueError(
            f"refusing to save {folder}: {len(broken)} weight tensors hold NaN or inf "
            f"({broken[0]}, ...); the earlier saved model, if any, is kept"
        )
    _atomic_torch_save(state, folder / WEIGHTS_NAME)
    config.save(folder)
    _write_history(folder, history)
    return folder


def save_torchscript(folder: str | Path, archive: bytes, config: ModelConfig) -> Path:
    """Write the model folder of an imported network: its TorchScript archive as is.

    Parameters
    ----------
    folder : str or Path
        Created if missing; each file is written to a temporary name and renamed.
    archive : bytes
        The TorchScript archive (``weights.pt``).
    config : ModelConfig
        Its architecture is ``{"name": "torchscript", ...}``.

    Returns
    -------
    Path
        The folder.
    """
    folder = _model_folder(folder, config)
    with atomic_path(folder / WEIGHTS_NAME, overwrite=True) as tmp:
        Path(tmp).write_bytes(archive)
    config.save(folder)
    _write_history(folder, ())
    return folder


def _write_history(folder: Path, history: Sequence[dict[str, Any]]) -> None:
    path = folder / HISTORY_NAME
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def load_model(folder: str | Path, device: str | torch.device = "auto") -> TrainedModel:
    """Load a model folder for prediction.

    Parameters
    ----------
    folder : str or Path
        A folder written by training or ``import-model`` (``config.json`` +
        ``weights.pt``: a state dict, or an imported TorchScript archive).
    device : {"auto", "cpu", "cuda"} or torch.device

    Returns
    -------
    TrainedModel

    Raises
    ------
    ValueError
        If the weights carry pickled objects (they could run code) or do not
        fit the network the config describes.
    """
    folder = Path(folder)
    config = ModelConfig.load(folder)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}: the model was never saved")
    imported = config.architecture.get("name") == TORCHSCRIPT
    net = build_network(config, weights, device) if imported else None
    state = net.state_dict() if net is not None else _safe_load(weights)
    broken = non_finite_tensors(state)
    if broken:
        raise ValueError(
            f"{weights} holds NaN or inf in {len(broken)} tensors ({broken[0]}, ...): the "
            "training that made it diverged and the model cannot predict; train it again "
            "(with --precision float32 if it ran in mixed precision)"
        )
    if net is not None:
        return TrainedModel(net.eval(), config, device, folder)
    net = build_network(config)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(
            f"{weights} does not fit the network described in {folder / 'config.json'} "
            f"({_first_mismatch(err)}): the two files come from different models; "
            "copy the model folder whole"
        ) from None
    net.to(device).eval()
    return TrainedModel(net, config, device, folder)


def _first_mismatch(err: RuntimeError) -> str:
    """The first concrete line of a ``load_state_dict`` error (size mismatch, missing key)."""
    lines = [ln.strip().rstrip(".") for ln in str(err).splitlines() if ln.strip()]
    return lines[1] if len(lines) > 1 else lines[0]


def list_models(root: str | Path) -> list[ModelInfo]:
    """Models in ``root`` and its sub-folders (two levels), newest first.

    Parameters
    ----------
    root : str or Path
        A folder of model folders (or a model folder itself).

    Returns
    -------
    list of ModelInfo
        Folders holding ``config.json`` and ``weights.pt``; unreadable ones are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    found = []
    candidates = [root, *root.glob("*"), *root.glob("*/*")]
    for folder in candidates:
        if not (folder / WEIGHTS_NAME).is_file():
            continue
        try:
            config = ModelConfig.load(folder)
        except (ValueError, TypeError, FileNotFoundError):
            continue
        found.append(
            ModelInfo(
                name=config.name or folder.name,
                task=config.task,
                classes=list(config.classes),
                created=config.created,
                iterations=int(config.iterations),
                path=folder,
            )
        )
    return sorted(found, key=lambda m: (m.created, str(m.path)), reverse=True)
