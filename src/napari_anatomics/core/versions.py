"""The versions a result was made with, recorded in model folders and provenance."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import numpy as np

try:
    #: This package's version, as installed (pyproject.toml is the one place it is written).
    __version__ = version("napari-anatomics")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"


def versions() -> dict[str, str]:
    """The versions of napari-anatomics, torch and numpy, for a model's or a result's record.

    Returns
    -------
    dict of str to str
        ``{"napari_anatomics": ..., "torch": ..., "numpy": ...}``; torch is imported here.
    """
    import torch

    return {"napari_anatomics": __version__, "torch": torch.__version__, "numpy": np.__version__}
