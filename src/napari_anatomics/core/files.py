"""Atomic writes: an output appears complete under its name, or not at all.

Every writer (volumes, tables, meshes, models, predictions) writes to a hidden sibling
of its target and renames it onto the target when complete:

* :func:`atomic_path` yields the temporary name ``.<name>.tmp-<random>`` (a file or a
  folder, e.g. a zarr store, is created there by the caller) and moves it onto the
  target on success, or removes it on any error or interruption (a closed job
  generator included), leaving an old target as it was;
* :func:`replace_path` is that final move: a file replaces a file atomically; a
  folder is swapped in by moving the old one aside first (``.<name>.old-<random>``),
  removed only once the new one is in place (and put back if the move fails);
* :func:`check_target` refuses, before any work, a target that would lose something;
* :func:`staged_folder` does the same for a set of files written into a folder
  among other files (meshes, exports).

The hidden names start with a dot and hold ``.tmp-``, ``.old-`` or ``.anatomics-``,
so a leftover (after a power cut) is recognisable and never mistaken for an output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Files that mark a folder as a store a writer made (zarr v3, v2 array, v2 group).
STORE_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def temp_sibling(final: str | os.PathLike, tag: str = "tmp") -> Path:
    """A new hidden name next to ``final``: ``.<name>.<tag>-<8 hex digits>``."""
    final = Path(final)
    return final.parent / f".{final.name}.{tag}-{uuid.uuid4().hex[:8]}"


def remove_path(path: str | os.PathLike) -> None:
    """Remove a file or a folder tree if it exists (errors ignored: cleaning up)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def check_target(final: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to write ``final`` where that would lose something, before any work.

    Its folder must exist; an existing ``final`` is replaced only with
    ``overwrite``, and never when it is a folder holding files that no writer
    made (not a zarr store): "overwrite" replaces an earlier output, not a
    folder of someone's files.

    Raises
    ------
    FileNotFoundError, FileExistsError
        Naming the path and the fix.
    """
    final = Path(final)
    if not final.parent.exists():
        raise FileNotFoundError(f"{final.parent}: folder does not exist; create it first")
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final}: already exists; choose another name or overwrite it")
    if (
        final.is_dir()
        and any(final.iterdir())
        and not any((final / name).exists() for name in STORE_MARKERS)
    ):
        raise FileExistsError(
            f"{final}: is a folder that holds no earlier output and is kept; choose another name"
        )


def replace_path(new: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Move the finished ``new`` (a file or folder) onto ``final``, replacing it last.

    A file onto a file is one atomic rename. Otherwise an old ``final`` is first
    moved aside to a hidden name, ``new`` takes its name, and the old one is
    removed; if that rename fails the old one is put back.

    Returns
    -------
    Path
        ``final``.
    """
    new, final = Path(new), Path(final)
    if not final.exists() or (final.is_file() and new.is_file()):
        os.replace(new, final)
        return final
    trash = temp_sibling(final, "old")
    os.replace(final, trash)
    try:
        os.replace(new, final)
    except BaseException:
        os.replace(trash, final)
        raise
    remove_path(trash)
    return final


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Write ``final`` under a temporary name; rename it onto ``final`` when complete.

    Parameters
    ----------
    final : str or PathLike
        The file or folder (a zarr store) to write.
    overwrite : bool
        Replace an existing ``final`` (see :func:`check_target`); otherwise it is an
        error, raised before the body runs.

    Yields
    ------
    Path
        The temporary sibling to create the file or folder at. On success it is moved
        onto ``final`` (:func:`replace_path`); on an error, or when a job generator
        writing it is closed, it is removed and ``final`` is left as it was.

    Raises
    ------
    FileNotFoundError, FileExistsError
        From :func:`check_target`.

    Examples
    --------
    >>> with atomic_path(folder / "table.csv", overwrite=True) as tmp:  # doctest: +SKIP
    ...     tmp.write_text("id,voxels\\n")
    """
    final = Path(final)
    check_target(final, overwrite)
    tmp = temp_sibling(final)
    try:
        yield tmp
        replace_path(tmp, final)
    except BaseException:
        remove_path(tmp)
        raise


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike, replaces: Iterable[Path] = ()) -> Iterator[Path]:
    """Write a set of files into a hidden folder; move them into ``folder`` when complete.

    On success the files in ``replaces`` (earlier exports) are removed and the
    new files moved in, so the folder never holds a mix of old and new, nor
    half of a new set. On failure or interruption nothing in ``folder``
    changes, and a ``folder`` this created is removed again. Other files in
    ``folder`` are never touched.

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
