"""napari-anatomics: segment and quantify organelles in volume EM stacks.

The headless core (no Qt) can be used from a notebook::

    from napari_anatomics import open_volume, check
    image = open_volume("stack.tif", voxel_size="10,10,40")

Qt widgets live in :mod:`napari_anatomics.napari.panels` and only wrap the core.
"""

from .core.progress import CancelToken, Progress, run_job
from .core.versions import __version__
from .core.volume import Volume, format_voxel_size, parse_voxel_size
from .datacheck.checks import check
from .io.read import open_volume

__all__ = [
    "CancelToken",
    "Progress",
    "Volume",
    "__version__",
    "check",
    "format_voxel_size",
    "open_volume",
    "parse_voxel_size",
    "run_job",
]
