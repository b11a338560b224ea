"""Folders of 2D slices: lazy reading in natural order, and combining into one stack.

Slice files are sorted the way people number them (``img_2.tif`` before
``img_10.tif``). Every slice's size and type is checked when the folder is
opened, from the file headers only, so a stray thumbnail or a slice saved with
another bit depth is reported by name before any work starts.
"""

from __future__ import annotations

import re
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from .formats import VolumeReadError
from .tiff import check_tiff_complete, quiet_tifffile

SLICE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")

_PIL_DTYPES = {"L": np.uint8, "P": np.uint8, "1": bool, "I;16": np.uint16, "I;16B": np.uint16}
_PIL_DTYPES.update({"I": np.int32, "F": np.float32, "RGB": np.uint8, "RGBA": np.uint8})


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``img_2`` < ``img_10``."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.lower())
        for part in re.split(r"(\d+)", name)
        if part
    )


def list_slices(folder: str | Path) -> list[Path]:
    """The image files of a slice folder, in natural order.

    Raises
    ------
    VolumeReadError
        If the folder holds no tif/png/jpg file.
    """
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SLICE_SUFFIXES
    ]
    if not files:
        raise VolumeReadError(
            f"{folder}: holds no slice images (.tif, .tiff, .png, .jpg); choose the folder "
            "that contains the slices"
        )
    return sorted(files, key=lambda p: natural_key(p.name))


def open_slice_folder(
    folder: str | Path,
) -> tuple[da.Array, tuple[float, float, float] | None]:
    """Stack a folder of 2D slices lazily, one dask chunk per slice.

    Parameters
    ----------
    folder : str or Path
        Folder of 2D tif/png/jpg slices; colour slices are read as grey.

    Returns
    -------
    data : dask.array.Array
        (z, y, x), one chunk per slice.
    voxel_size : None
        Slice files do not record a z spacing, so the caller's voxel size is used.

    Raises
    ------
    VolumeReadError
        Naming the first slice whose size or type differs from the first slice.
    """
    files = list_slices(folder)
    headers = [_slice_header(p) for p in files]
    shape, dtype, _ = headers[0]
    for path, (other_shape, other_dtype, _) in zip(files[1:], headers[1:]):
        if other_shape != shape or other_dtype != dtype:
            raise VolumeReadError(
                f"{path}: slice is {other_shape[1]} x {other_shape[0]} px {other_dtype}, "
                f"but {files[0].name} is {shape[1]} x {shape[0]} px {dtype}; all slices must "
                "have the same size and type: remove or re-export this file"
            )
    read = dask.delayed(_read_slice, pure=True)
    slices = [
        da.from_delayed(read(str(p), grey), shape=shape, dtype=dtype)
        for p, (_, _, grey) in zip(files, headers)
    ]
    return da.stack(slices), None


def _slice_header(path: Path) -> tuple[tuple[int, int], np.dtype, bool]:
    """(shape, dtype, needs grey conversion) from the file header only."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with quiet_tifffile() as logged, tifffile.TiffFile(path) as tif:
                check_tiff_complete(tif, path, logged)
                series = tif.series[0]
                shape = tuple(n for n in series.shape if n != 1)
                dtype = np.dtype(series.dtype)
            if len(shape) == 3 and shape[-1] in (3, 4):
                return shape[:2], dtype, True  # type: ignore[return-value]
            if len(shape) != 2:
                raise VolumeReadError(
                    f"{path}: is not a 2D slice (shape {shape}); a slice folder must hold "
                    "one 2D image per file"
                )
            return shape, dtype, False  # type: ignore[return-value]
        from PIL import Image

        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
        if mode not in _PIL_DTYPES:
            raise VolumeReadError(f"{path}: unsupported image mode {mode!r}; save it as grey")
        return (height, width), np.dtype(_PIL_DTYPES[mode]), mode in ("RGB", "RGBA")
    except VolumeReadError:
        raise
    except Exception as err:
        raise VolumeReadError(
            f"{path}: cannot be read ({err}); the slice may be damaged: re-export it "
            "or remove it from the folder"
        ) from None


def _read_slice(path: str, grey: bool) -> np.ndarray:
    """Read one slice; colour slices become grey (mean of R, G, B)."""
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        array = np.squeeze(tifffile.imread(path))
    else:
        from PIL import Image

        with Image.open(path) as image:
            array = np.asarray(image)
    if grey:
        rgb = array[..., :3].astype(np.float32).mean(axis=-1)
        array = np.round(rgb).astype(array.dtype)
    return array
