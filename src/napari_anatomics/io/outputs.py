"""One output policy for every command and panel that writes.

* An existing output is never replaced unless the user says so
  (``--overwrite``, a panel's *Replace* box): :func:`check_new_file`,
  :func:`check_output_folder`.
* A run that can resume (same inputs and settings) resumes, and what the user
  edited in an output is left alone (``anatomics predict`` keeps the labels of
  an earlier run; see :mod:`napari_anatomics.cli._predict`).
* An output goes into a place of its own: a prediction into a new zarr group
  or an earlier prediction (:func:`~napari_anatomics.predict.outputs.check_prediction_output`),
  a model into a new folder or the model it continues
  (:func:`~napari_anatomics.train.outputs.check_train_output`), never in among a
  user's other files; a set of files replaces an earlier set all at once
  (:func:`~napari_anatomics.core.files.staged_folder`).
* Writability and free space are checked before the work, not after
  (:func:`check_writable`); an operating-system error met anyway is told in
  words with the path and the fix (:func:`describe_os_error`).
* Names built from layer names are made safe for any file system
  (:func:`safe_file_name`).

Every refusal is one line that names the path, what is wrong and the fix.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: Files that mesh and point-cloud exports write (``analyze.meshes.export_meshes``).
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


def option_prefix(option: str) -> str:
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
            f"{option_prefix(option)}{path}: is a folder; give a file name, e.g. {path / example}"
        )
    if not path.parent.is_dir():
        raise OutputError(
            f"{option_prefix(option)}{path}: the folder {path.parent} does not exist; create it "
            "first or check the path"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{option_prefix(option)}{path}: already exists and is kept; choose another name, "
            f"or {hint}"
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
    :func:`~napari_anatomics.core.files.staged_folder` once the new files are
    complete; other files are never touched.

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
        raise OutputError(
            f"{option_prefix(option)}{folder}: is a file, not a folder; give a folder name"
        )
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not p.name.startswith(".anatomics-")]
    earlier = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    if entries and not overwrite:
        what = f"{len(earlier)} earlier export file(s)" if earlier else f"{len(entries)} file(s)"
        raise FileExistsError(
            f"{option_prefix(option)}{folder}: already holds {what}, which are kept; choose a "
            f"new or empty folder, or {hint} (only earlier exports are replaced)"
        )
    return earlier


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
