"""The prediction settings, declared once.

:data:`SETTINGS` declares each setting of a tiled prediction
(:func:`napari_anatomics.predict.tiled.predict`) as a
:class:`~napari_anatomics.core.settings.Setting`: its type, default, range or
choices, help, CLI flag and, for those the Auto-label panel shows, its label.
:class:`PredictConfig` takes its defaults from here, ``anatomics predict``
builds its options from here and the Auto-label panel its fields.

This module imports neither torch nor zarr: the command line reads it before
deciding whether there is work to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.settings import Setting, by_name, check_values
from ..io.probabilities import ENCODINGS

SETTINGS: tuple[Setting, ...] = (
    Setting("stride", "triple", None,
            "tile step (z, y, x) in model voxels; at most the window", metavar="Z,Y,X",
            auto="the window minus 25%", label="Tile step"),
    Setting("tta", "int", None, "test-time augmentation: flips/rotations averaged",
            choices=(0, 4, 8),
            auto="the model's, 4 for models trained with tuning, else 0",
            label="Test-time augmentation"),
    Setting("tta_mode", "str", "mean", "how augmented predictions are combined",
            choices=("mean", "max")),
    Setting("batch", "int", 2,
            "tiles per network call (on CPUs a batch of 1 takes a slow path)", low=1,
            label="Batch (tiles)"),
    Setting("output", "str", "uint8",
            "storage of the probabilities (uint8: value/255, rounded)", choices=ENCODINGS),
    Setting("chunks", "triple", None, "output chunk (z, y, x)", metavar="Z,Y,X",
            auto="32,256,256 clipped to the stack"),
    Setting("memory_mb", "float", 256.0,
            "memory (MB) for one processing region, and again for tiles kept for the next "
            "regions", low=0.0, low_open=True, metavar="MB"),
    Setting("blend", "str", "gaussian", "weight profile blending overlapping tiles",
            choices=("gaussian", "linear")),
    Setting("device", "str", "auto", "where to predict: auto, cpu, cuda or cuda:N"),
    Setting("precision", "str", "auto",
            "mixed precision: auto uses it on CUDA and on CPUs with bfloat16 hardware",
            choices=("auto", "mixed", "float32")),
    Setting("threads", "int", None, "CPU threads (ignored on CUDA)", low=1,
            auto="every core this process may use, or $ANATOMICS_THREADS"),
    Setting("scheduler", "str", None,
            "a dask.distributed scheduler (tcp://host:8786, or tls://host:8786 with the "
            "--tls-* options). Trust: dask sends pickled Python objects, so the scheduler and "
            "its workers can run code on this machine and read what it sends; connect only "
            "to a cluster you control, over TLS when the network is shared (docs/cluster.md)",
            metavar="ADDR"),
    Setting("workers", "int", None, "run on a local cluster of N worker processes", low=1,
            metavar="N"),
)

#: The settings by name.
PREDICT: dict[str, Setting] = by_name(SETTINGS)


def _default(name: str) -> Any:
    return PREDICT[name].default


@dataclass(frozen=True)
class PredictConfig:
    """Settings of one tiled prediction; each is a :class:`Setting` of :data:`SETTINGS`.

    ``None`` fields are chosen when the run starts: ``stride`` and ``chunks``
    from the window and the stack, ``tta`` from the model's decoding,
    ``threads`` from the cores.
    """

    stride: tuple[int, int, int] | None = _default("stride")
    tta: int | None = _default("tta")
    tta_mode: str = _default("tta_mode")
    batch: int = _default("batch")
    output: str = _default("output")
    chunks: tuple[int, int, int] | None = _default("chunks")
    memory_mb: float = _default("memory_mb")
    blend: str = _default("blend")
    device: str = _default("device")
    precision: str = _default("precision")
    threads: int | None = _default("threads")
    scheduler: str | None = _default("scheduler")
    workers: int | None = _default("workers")

    def check_ranges(self) -> None:
        """Raise ValueError naming the first setting outside its declared range.

        Also refuses a scheduler together with local workers.
        """
        check_values(self, PREDICT)
        if self.scheduler is not None and self.workers is not None:
            raise ValueError("give either a scheduler address or a number of workers, not both")
