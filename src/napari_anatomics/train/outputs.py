"""Where a model is written: the check of a training run's model folder.

:func:`check_train_output` applies the output policy of
:mod:`napari_anatomics.io.outputs` to a model folder (see
:mod:`napari_anatomics.models.store`): a new folder, or the model a run resumes,
trained on the same data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..io.outputs import OutputError, check_writable

#: Files of a model folder (see :mod:`napari_anatomics.models.store`; not imported: torch).
MODEL_FILES = ("config.json", "weights.pt", "checkpoint.pt", "history.csv")
#: Free space a model folder needs (weights, a checkpoint with optimizer state, history).
MODEL_BYTES = 64 * 2**20


def check_train_output(
    out: str | os.PathLike,
    *,
    resume: bool = False,
    image: Any = None,
    labels: Any = None,
) -> Path:
    """Check the model folder a training run is about to write, before any work.

    A new name, an empty folder or (with ``resume``) the model being
    continued is fine. Refused: a file; a folder holding files that is not a
    model folder (the model would be written in among them); resuming a
    folder with no model; resuming a model trained on other data (the shape
    or the file names differ from those recorded in its ``config.json``),
    which would silently continue on the wrong stack: ``--init-from``
    fine-tunes a model on new data. The folder must be writable with room for
    a model (:func:`check_writable`).

    Parameters
    ----------
    out : str or PathLike
        The model folder (``anatomics train --out``).
    resume : bool
        The run continues the model in ``out``.
    image, labels : Volume, optional
        The training data, compared with what the model was trained on.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        Naming the folder, what is wrong and the fix.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(
            f"--out {out}: is a file; the model is a folder: choose a new folder name"
        )
    entries = [p.name for p in out.iterdir()] if out.is_dir() else []
    is_model = any(name in entries for name in MODEL_FILES)
    if entries and not is_model:
        raise OutputError(
            f"--out {out}: is a folder holding {len(entries)} other file(s), not a model; "
            "the model would be written in among them: choose a new folder name (train "
            "creates it)"
        )
    if resume and not is_model:
        raise OutputError(
            f"--resume: {out} holds no model to continue; check the folder, or train a new "
            "model without --resume"
        )
    if resume and (out / "config.json").is_file():
        _check_same_data(out, image, labels)
    check_writable(out, MODEL_BYTES)
    return out


def _check_same_data(out: Path, image: Any, labels: Any) -> None:
    from ..models.config import ModelConfig

    recorded = ModelConfig.load(out).data or {}
    fix = (
        f"resume with the same --images and --labels, or train a new model on this data "
        f"with --init-from {out} (fine-tuning)"
    )
    shape = recorded.get("shape")
    if image is not None and shape is not None and list(image.shape) != list(shape):
        raise OutputError(
            f"--resume: {out} was trained on a stack of shape {tuple(shape)}, these images "
            f"are {tuple(image.shape)}; {fix}"
        )
    for what, volume in (("images", image), ("labels", labels)):
        before = recorded.get("image" if what == "images" else "labels")
        now = getattr(volume, "source", None)
        if before and now and _file_name(before) != _file_name(now):
            raise OutputError(f"--resume: {out} was trained on {what} {before}, not {now}; {fix}")


def _file_name(source: str) -> str:
    """A source's file name (and key), which survives moving the data to another folder."""
    return Path(str(source).rstrip("/")).name
