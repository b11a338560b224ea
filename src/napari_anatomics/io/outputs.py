"""One output policy for every command and panel that writes.

* An existing output is never replaced unless the user says so
  (``--overwrite``, a panel's *Replace* box): :func:`check_new_file`,
  :func:`check_output_folder`.
* A run that can resume (same inputs and settings) resumes, and what the user
  edited in an output is left alone (``anatomics predict`` keeps the labels of
  an earlier run; see :mod:`napari_anatomics.cli._predict`).
* An output goes into a place of its own: a prediction into a new zarr group
  or an earlier prediction (:func:`check_prediction_output`), a model into a
  new folder or the model it continues (:func:`check_train_output`), never in
  among a user's other files.
* Writability and free space are checked before the work, not after
  (:func:`check_writable`); an operating-system error met anyway is told in
  words with the path and the fix (:func:`describe_os_error`).
* Names built from layer names are made safe for any file system
  (:func:`safe_file_name`).

Every refusal is one line that names the path, what is wrong and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

#: Files of a model folder (see :mod:`napari_anatomics.models.store`; not imported: torch).
MODEL_FILES = ("config.json", "weights.pt", "checkpoint.pt", "history.csv")
#: Free space a model folder needs (weights, a checkpoint with optimizer state, history).
MODEL_BYTES = 64 * 2**20
#: Members of a prediction group written by ``predict`` / ``postprocess``.
PREDICTION_MEMBERS = ("probabilities", "labels")
#: Files that mesh and point-cloud exports write (:func:`~.geometry.export_meshes`).
MESH_PATTERNS = ("mesh_*.ply", "points_*.ply", "meshes.ply", "points.ply")
#: How the command line asks for a replacement; panels pass their own words.
OVERWRITE_HINT = "add --overwrite to replace it"


class OutputError(OSError):
    """An output cannot be written where asked; the message names the path and the fix."""


def format_bytes(n: float) -> str:
    """A byte count for people: ``"1.5 GB"``, ``"320 MB"``, ``"12 kB"``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def _named(option: str) -> str:
    """``"--csv "`` to put before a path in a message (nothing when no option is named)."""
    return f"{option} " if option else ""


def _existing_folder(path: Path) -> Path:
    """The folder new files for ``path`` are created in: itself, or its nearest existing parent."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable(path: str | os.PathLike, need_bytes: float = 0) -> Path:
    """Check that ``path`` can be written, with room for it, before any work starts.

    A probe file is created and removed in the folder that will receive the
    output (``path`` itself when it is a folder, else its nearest existing
    parent folder), so a read-only mount or a folder without write permission
    is found now rather than after hours of work. Free space is compared with
    ``need_bytes``.

    Parameters
    ----------
    path : str or PathLike
        The file or folder to be written; it need not exist yet.
    need_bytes : float
        An estimate of what will be written (0: only writability is checked).

    Returns
    -------
    Path
        The folder that was checked.

    Raises
    ------
    OutputError
        Naming the path, the reason (read-only, no permission, not a folder,
        not enough space: how much is needed and free) and the fix.
    """
    path = Path(path)
    folder = _existing_folder(path)
    if not folder.is_dir():
        raise OutputError(
            f"{path}: cannot be written: {folder} is a file, not a folder; choose "
            "another output location"
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=".anatomics-probe-", dir=folder)
    except OSError as err:
        raise OutputError(
            f"{path}: cannot be written: {_reason(err, folder)}; choose a folder you can "
            "write to (or ask for write access)"
        ) from None
    os.close(handle)
    os.unlink(probe)
    if need_bytes > 0:
        free = shutil.disk_usage(folder).free
        if free < need_bytes:
            raise OutputError(
                f"{path}: not enough free space: it needs about {format_bytes(need_bytes)}, "
                f"{folder} has {format_bytes(free)} free; free some space or choose a "
                "folder on another disk"
            )
    return folder


def _reason(err: OSError, folder: Path) -> str:
    if err.errno == errno.EROFS:
        return f"{folder} is on a read-only file system"
    if err.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write in {folder}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk of {folder} is full (or your quota is used up)"
    return f"{folder}: {err.strerror or err}"


def describe_os_error(err: BaseException, where: str | os.PathLike | None = None) -> str:
    """One line for an operating-system error: the path, what happened and the fix.

    ``[Errno 28] No space left on device`` says neither which file nor what
    to do; this names the file (the final name, not a temporary one) and the
    usual fix. Errors it does not know are returned as they are.

    Parameters
    ----------
    err : BaseException
        Any error; those that are not operating-system errors are returned as text.
    where : str or PathLike, optional
        The output being written, named when the error itself names no file (a
        full disk met inside a library often does not say where).

    Returns
    -------
    str
    """
    if not isinstance(err, OSError) or isinstance(err, OutputError) or err.errno is None:
        return str(err)
    name = err.filename2 or err.filename or where
    where = f"{name}: " if name else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"{where}the disk is full (or your quota is used up); free some space or "
            "write to a folder on another disk, then run the command again"
        )
    if err.errno == errno.EROFS:
        return f"{where}is on a read-only file system; choose a folder you can write to"
    if err.errno in (errno.EACCES, errno.EPERM):
        return (
            f"{where}permission denied; choose a file or folder you may use (or ask for "
            "access), then run the command again"
        )
    if err.errno == errno.EISDIR:
        return f"{where}is a folder; give the name of a file to write"
    if err.errno == errno.ENOTDIR:
        return f"{where}a part of this path is a file, not a folder; check the path"
    return str(err)


def check_new_file(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    option: str = "the output",
    hint: str = OVERWRITE_HINT,
    example: str = "out.csv",
) -> Path:
    """Check a file that is about to be written: a file name, new unless ``overwrite``.

    Parameters
    ----------
    path : str or PathLike
        The file to write.
    overwrite : bool
        The user asked to replace an existing file.
    option : str
        How the message names the value (``--csv``).
    hint : str
        How the user asks for a replacement (the CLI flag, a panel's box).
    example : str
        A file name to suggest when ``path`` is a folder.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
        When ``path`` is a folder or its folder is missing.
    FileExistsError
        When it exists and ``overwrite`` is not set.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(
            f"{_named(option)}{path}: is a folder; give a file name, e.g. {path / example}"
        )
    if not path.parent.is_dir():
        raise OutputError(
            f"{_named(option)}{path}: the folder {path.parent} does not exist; create it first "
            "or check the path"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{_named(option)}{path}: already exists and is kept; choose another name, or {hint}"
        )
    return path


def check_output_folder(
    folder: str | os.PathLike,
    *,
    overwrite: bool = False,
    patterns: Sequence[str] = MESH_PATTERNS,
    option: str = "the output folder",
    hint: str = OVERWRITE_HINT,
) -> list[Path]:
    """Check a folder that files are about to be written into; return earlier outputs in it.

    A new or empty folder is fine. A folder holding anything is refused
    unless ``overwrite``: earlier exports would mix with the new ones, or the
    new files would land among the user's own. With ``overwrite`` the files
    matching ``patterns`` (earlier exports) are returned, to be replaced by
    :func:`staged_folder` once the new files are complete; other files are
    never touched.

    Parameters
    ----------
    folder : str or PathLike
    overwrite : bool
    patterns : sequence of str
        Glob patterns of the files this kind of export writes.
    option : str
        How the message names the folder (``--out``).
    hint : str
        How the user asks for a replacement.

    Returns
    -------
    list of Path
        Earlier exports that a finished run replaces.

    Raises
    ------
    OutputError
        When ``folder`` is a file.
    FileExistsError
        When it holds files and ``overwrite`` is not set.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{_named(option)}{folder}: is a file, not a folder; give a folder name")
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not p.name.startswith(".anatomics-")]
    earlier = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    if entries and not overwrite:
        what = f"{len(earlier)} earlier export file(s)" if earlier else f"{len(entries)} file(s)"
        raise FileExistsError(
            f"{_named(option)}{folder}: already holds {what}, which are kept; choose a new or "
            f"empty folder, or {hint} (only earlier exports are replaced)"
        )
    return earlier


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike, replaces: Iterable[Path] = ()) -> Iterator[Path]:
    """Write a set of files into a hidden folder; move them into ``folder`` when complete.

    On success the files in ``replaces`` (earlier exports) are removed and the
    new files moved in, so the folder never holds a mix of old and new, nor
    half of a new set. On failure or interruption nothing in ``folder``
    changes, and a ``folder`` this created is removed again.

    Parameters
    ----------
    folder : str or PathLike
        Where the files end up (created if missing).
    replaces : iterable of Path
        Earlier files to remove once the new ones are complete.

    Yields
    ------
    Path
        The hidden folder to write into.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    stage = folder / f".anatomics-tmp-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    done = False
    try:
        yield stage
        for old in replaces:
            old.unlink(missing_ok=True)
        for new in sorted(stage.iterdir()):
            os.replace(new, folder / new.name)
        done = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not done and created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty


def moved_out_of_stage(paths: Iterable[Path], stage: Path, folder: Path) -> list[Path]:
    """Where files written into a :func:`staged_folder` ended up."""
    return [folder / Path(p).relative_to(stage) for p in paths]


def _is_zarr(path: Path) -> bool:
    return any((path / name).exists() for name in ("zarr.json", ".zgroup", ".zarray"))


def check_prediction_output(path: str | os.PathLike, option: str = "--out") -> Path:
    """Check where a prediction (a zarr group) is about to be written.

    A new name, an empty folder or an earlier prediction (to resume, or to
    keep its labels) is fine. Refused: a file, a zarr array, a plain folder
    holding files (the zarr would be written in among them), or a zarr group
    holding other arrays (an image stack, say) that no prediction wrote.

    Parameters
    ----------
    path : str or PathLike
    option : str
        How the message names the value.

    Returns
    -------
    Path

    Raises
    ------
    OutputError
    """
    path = Path(path)
    fix = f"choose a new name ending in .zarr for {option}"
    if path.exists() and not path.is_dir():
        raise OutputError(f"{_named(option)}{path}: is a file, not a zarr group; {fix}")
    if not path.is_dir():
        return path
    entries = [p.name for p in path.iterdir()]
    if not entries:
        return path
    if not _is_zarr(path):
        raise OutputError(
            f"{_named(option)}{path}: is a folder holding {len(entries)} other file(s), not a "
            f"prediction; the zarr would be written in among them: {fix}"
        )
    if (path / ".zarray").exists() or _zarr_node_type(path) == "array":
        raise OutputError(f"{_named(option)}{path}: is a zarr array, not a group; {fix}")
    ours = {*PREDICTION_MEMBERS, "zarr.json", ".zgroup", ".zattrs"}
    foreign = [n for n in entries if n not in ours and not n.startswith(".")]
    if foreign and not _is_prediction(path):
        raise OutputError(
            f"{_named(option)}{path}: holds other data ({', '.join(sorted(foreign)[:3])}) that no "
            f"prediction wrote; {fix}"
        )
    return path


def _zarr_node_type(path: Path) -> str | None:
    import json

    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text()).get("node_type")
    except (OSError, ValueError):
        return None


def _is_prediction(path: Path) -> bool:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:  # unreadable: not ours
        return False
    return "prediction" in group.attrs or any(m in group for m in PREDICTION_MEMBERS)


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


#: Names Windows reserves for devices, whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10))}
_RESERVED |= {f"lpt{i}" for i in range(1, 10)}


def safe_file_name(text: str, default: str = "export", max_length: int = 100) -> str:
    """A file name built from ``text`` that is safe on every file system.

    Layer names may hold path separators and keys (``f.h5:volumes/labels``),
    which would make nested folders or an invalid name. Every character
    other than letters, digits, ``.``, ``-`` and ``_`` becomes ``_`` (runs
    collapsed), leading dots and trailing dots or spaces are removed (no
    hidden files, no ``..``), names Windows reserves get a ``_`` appended,
    and the length is capped.

    Parameters
    ----------
    text : str
    default : str
        Used when nothing usable is left.
    max_length : int

    Returns
    -------
    str

    Examples
    --------
    >>> safe_file_name("f.h5:volumes/labels")
    'f.h5_volumes_labels'
    >>> safe_file_name("../../etc")
    'etc'
    """
    name = re.sub(r"[^\w.\-]+", "_", str(text), flags=re.ASCII)
    name = re.sub(r"_{2,}", "_", name).strip("_. ")
    name = name.lstrip(".")[:max_length].rstrip("_. ")
    if not name:
        return default
    if name.split(".")[0].lower() in _RESERVED:
        name += "_"
    return name
