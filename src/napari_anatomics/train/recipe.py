"""The training recipe: every training setting declared once.

:data:`SETTINGS` names each setting of a training run once: its name (the
:class:`TrainConfig` field), type, default, range or choices, help text,
command-line flag and what the data decides when the default is ``None``
("auto"), as a :class:`~napari_anatomics.core.settings.Setting`.
:class:`TrainConfig` takes its defaults from here, ``anatomics train`` builds
its options from here (:func:`~napari_anatomics.cli._train.add_train_options`),
and the Train panel, ``anatomics demo`` and the training benchmark read the same
defaults, so a setting has one name and one default everywhere.

The defaults are the best settings measured (see
``benchmarks/train_chloroplasts.py`` and ``benchmarks/train_mitochondria.py``);
the ones that depend on the data (network, downsampling, window, batch, depth)
are chosen by :func:`napari_anatomics.train.auto.resolve` when a run starts,
printed and stored in the model's ``config.json``. A value the user gives
always wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..core.settings import Setting, by_name, check_values

__all__ = ["RECIPE", "SETTINGS", "Setting", "TrainConfig", "default"]

SETTINGS: tuple[Setting, ...] = (
    Setting("task", "str", "instance", "semantic (classes) or instance (separate objects)",
            choices=("semantic", "instance")),
    Setting("architecture", "str", "auto",
            "network: unet2d (a 2D U-Net run slice by slice) or resunet3d (anisotropic 3D "
            "U-Net)", choices=("auto", "unet2d", "resunet3d"), aliases=("--arch",),
            auto="unet2d unless the voxels are near-isotropic (z < 2.5 x in-plane) and at "
            "least 16 slices are painted"),
    Setting("window", "triple", None, "crop size at model resolution", metavar="Z,Y,X",
            auto="1,256,256 for 2D, 8,128,128 for 3D (shrunk to the volume)"),
    Setting("downsample", "triple", None,
            "reduce the data by these factors before the network (e.g. 1,2,2)",
            metavar="Z,Y,X",
            auto="in-plane 1, 2 or 4: the largest that keeps the median painted object at "
            "least 40 voxels across"),
    Setting("iterations", "int", 4000, "training steps (the run also stops at --time-limit)",
            low=1),
    Setting("batch", "int", None, "crops per step", low=1,
            auto="4 for 2D, 2 for 3D (x4 / x2 on a CUDA GPU with 16 GB free)"),
    Setting("lr", "float", 2e-3, "peak learning rate (AdamW)", low=1e-7, high=1.0),
    Setting("weight_decay", "float", 1e-4, "AdamW weight decay", low=0.0, high=1.0),
    Setting("warmup", "int", 50, "iterations of linear learning-rate warmup", low=0),
    Setting("save_every", "int", 200, "checkpoint every N iterations", low=1, metavar="N"),
    Setting("time_limit", "float", None, "stop and save after this many minutes",
            low=1e-3, metavar="MINUTES"),
    Setting("val_fraction", "float", 0.1,
            "hold out this share of the painted x extent: it scores the model and tunes "
            "its decoding (0 = train on all, tune on the training data)", low=0.0,
            high=0.45, metavar="F"),
    Setting("val_every", "int", None, "validate every N iterations (default: --save-every)",
            low=1, metavar="N"),
    Setting("tune_decoding", "bool", True,
            "after training, choose how maps become objects (instance seeds, semantic "
            "thresholds) on the painted data, and store it with the model"),
    Setting("init_from", "path", None, "fine-tune this earlier model", metavar="DIR"),
    Setting("resume", "bool", False, "continue the run saved in --out"),
    Setting("device", "str", "auto", "where to train", choices=("auto", "cpu", "cuda")),
    Setting("precision", "str", "auto",
            "auto: mixed precision where a check on the first batch shows it finite and "
            "close to float32 (bfloat16 on CPUs with the hardware, float16 on CUDA); a run "
            "that goes non-finite later switches to float32",
            choices=("auto", "mixed", "float32")),
    Setting("threads", "int", None, "CPU threads", low=1,
            auto="every core this process may use (affinity and cgroup quota), or "
            "$ANATOMICS_THREADS"),
    Setting("width", "int", 16, "3D U-Net: channels of the top level", low=1),
    Setting("depth", "int", None, "resolution levels", low=1,
            auto="5 for 2D, 4 for 3D"),
    Setting("norm", "str", "batch", "3D U-Net normalization",
            choices=("batch", "instance", "group")),
    Setting("encoder", "str", "resnet18", "2D U-Net encoder (segmentation-models-pytorch)"),
    Setting("distance", "bool", False, "instance: add a distance map (BCD targets)"),
    Setting("boundary_width", "int", 1, "instance: half-width of the boundary band (voxels)",
            low=1, high=8),
    Setting("contact_weight", "float", 1.0,
            "instance: loss weight where two objects touch (e.g. 10 when touching objects "
            "get merged)", low=1e-3, high=1000.0, metavar="W"),
    Setting("object_crops", "float", 0.8,
            "share of crops centred on a painted object (each object as often as the others)",
            low=0.0, high=1.0, metavar="F"),
    Setting("balance_objects", "bool", True,
            "centre those crops on each object equally often (else by area)"),
    Setting("augment", "bool", True, "flips, rotations, brightness/contrast, zoom, copy-paste"),
    Setting("zoom", "float", 0.5,
            "zoom augmentation: crops shown at x1/(1+S) to x(1+S); helps when object sizes "
            "vary", low=0.0, high=2.0, metavar="S"),
    Setting("elastic", "float", 0.0, "elastic warp strength (voxels)", low=0.0, high=50.0,
            metavar="PX"),
    Setting("copy_paste", "float", 2.0,
            "painted objects pasted into each crop from elsewhere, on average (2: two in "
            "each, 0.5: one in every other crop); objects are learnt by their look, not their "
            "surroundings", low=0.0, high=3.0, metavar="P"),
    Setting("brightness", "float", 0.2, "brightness augmentation: largest shift (std units)",
            low=0.0, high=2.0, metavar="B"),
    Setting("contrast", "float", 0.2, "contrast augmentation: x(1-C) to x(1+C)", low=0.0,
            high=0.9, metavar="C"),
    Setting("seed", "int", 0, "random seed", low=0),
    Setting("ignore_value", "int", None, "label value meaning unpainted", low=0, metavar="V"),
    Setting("class_names", "names", None, "semantic class names, comma separated",
            aliases=("--classes",), metavar="NAMES"),
    Setting("class_values", "names", None, "label value of each class", cli=False),
    Setting("use_mask", "bool", True, "leave unpainted slices out of the loss", cli=False),
    Setting("cache_mb", "float", 1024.0, "keep the reduced data in memory below this size",
            low=0.0, cli=False),
)

#: The settings by name.
RECIPE: dict[str, Setting] = by_name(SETTINGS)


def default(name: str) -> Any:
    """The declared default of setting ``name``."""
    return RECIPE[name].default


@dataclass
class TrainConfig:
    """Settings of one training run (stored in the model's ``config.json``).

    Every field is a :class:`Setting` of :data:`SETTINGS`, where its meaning,
    range and default are declared; ``None`` (and ``"auto"``) fields are
    chosen from the data when the run starts
    (:func:`napari_anatomics.train.auto.resolve`). ``voxel_size`` (z, y, x nm)
    defaults to the image's.
    """

    task: Literal["semantic", "instance"] = default("task")
    architecture: str = default("architecture")
    window: tuple[int, int, int] | None = default("window")
    voxel_size: tuple[float, float, float] | None = None
    downsample: tuple[int, int, int] | None = default("downsample")
    iterations: int = default("iterations")
    batch: int | None = default("batch")
    lr: float = default("lr")
    weight_decay: float = default("weight_decay")
    warmup: int = default("warmup")
    save_every: int = default("save_every")
    time_limit: float | None = default("time_limit")
    val_fraction: float = default("val_fraction")
    val_every: int | None = default("val_every")
    tune_decoding: bool = default("tune_decoding")
    init_from: str | None = default("init_from")
    resume: bool = default("resume")
    device: Literal["auto", "cpu", "cuda"] = default("device")
    precision: Literal["auto", "mixed", "float32"] = default("precision")
    threads: int | None = default("threads")
    width: int = default("width")
    depth: int | None = default("depth")
    norm: str = default("norm")
    encoder: str = default("encoder")
    distance: bool = default("distance")
    boundary_width: int = default("boundary_width")
    contact_weight: float = default("contact_weight")
    object_crops: float = default("object_crops")
    balance_objects: bool = default("balance_objects")
    augment: bool = default("augment")
    zoom: float = default("zoom")
    elastic: float = default("elastic")
    copy_paste: float = default("copy_paste")
    brightness: float = default("brightness")
    contrast: float = default("contrast")
    seed: int = default("seed")
    ignore_value: int | None = default("ignore_value")
    class_names: list[str] | None = default("class_names")
    class_values: list[int] | None = default("class_values")
    use_mask: bool = default("use_mask")
    cache_mb: float = default("cache_mb")

    def check_ranges(self) -> None:
        """Raise ValueError naming the first setting outside its declared range."""
        check_values(self, RECIPE)

    @property
    def time_limit_s(self) -> float | None:
        """The time limit in seconds (None: no limit)."""
        return None if self.time_limit is None else float(self.time_limit) * 60.0
