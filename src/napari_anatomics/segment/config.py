"""The post-processing settings, declared once, and the named presets.

:data:`SETTINGS` declares each setting of how probability maps become labels
(:func:`napari_anatomics.segment.postprocess.postprocess`) as a
:class:`~napari_anatomics.core.settings.Setting`. :class:`SegmentConfig`
takes its defaults from here; ``anatomics predict`` and ``anatomics
postprocess`` build their decoding options from here and the Auto-label panel
its fields. :data:`PRESETS` are named configs (the panel's "split touching
objects"); a trained model's decoding (``ModelConfig.decoding``, chosen by
:mod:`napari_anatomics.train.decoding`) is read as one with
:meth:`SegmentConfig.tuned`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..core.settings import Setting, by_name, check_values

SETTINGS: tuple[Setting, ...] = (
    Setting("min_size", "int", 0, "remove objects under N voxels", low=0, metavar="N",
            label="Drop objects under"),
    Setting("connectivity", "int", 26, "voxel connectivity of objects (and instance seeds)",
            choices=(6, 18, 26)),
    Setting("thresholds", "floats", None,
            "semantic: probability threshold per class (background excluded); a voxel "
            "takes the most probable class over its threshold", low=0.0, high=1.0,
            metavar="T1,T2,...", auto="the most probable class"),
    Setting("seed_threshold", "float", 0.8, "instance: seeds need foreground >= this",
            low=0.0, high=1.0, metavar="P"),
    Setting("boundary_threshold", "float", 0.3, "instance: seeds need boundary <= this",
            low=0.0, high=1.0, metavar="P"),
    Setting("foreground_threshold", "float", 0.5,
            "instance: object voxels need foreground >= this", low=0.0, high=1.0, metavar="P"),
    Setting("distance_threshold", "float", 0.5,
            "instance maps with a distance channel: seeds need distance >= this (and the "
            "watershed floods boundary - distance)", low=0.0, high=1.0, metavar="P"),
    Setting("seed_erosion", "int", 0,
            "instance: erode seeds by PX voxels in-plane to split objects joined by a thin "
            "neck", low=0, metavar="PX"),
    Setting("seed_depth", "float", 0.0,
            "instance: keep seed voxels at least F times as deep as the deepest one nearby, to "
            "split objects joined by a neck thin for their size (e.g. 0.5)", low=0.0,
            high=0.99, metavar="F"),
    Setting("seed_depth_radius", "int", 60,
            "instance: the neighbourhood of --seed-depth, about an object's radius", low=1,
            metavar="PX"),
    Setting("min_seed_size", "int", 0,
            "instance: drop seeds under N voxels before the watershed, so a speck of low "
            "boundary inside an object does not split it", low=0, metavar="N"),
    Setting("halo", "triple", (8, 32, 32),
            "instance: voxels (z, y, x) read around each block for the watershed",
            metavar="Z,Y,X", cli=False),
)

#: The settings by name.
SEGMENT: dict[str, Setting] = by_name(SETTINGS)


def _default(name: str) -> Any:
    return SEGMENT[name].default


@dataclass(frozen=True)
class SegmentConfig:
    """How probability maps become labels; each field is a :class:`Setting` of :data:`SETTINGS`.

    Semantic maps use ``thresholds``, ``connectivity`` and ``min_size``;
    instance maps the seed and watershed settings too.
    """

    min_size: int = _default("min_size")
    connectivity: int = _default("connectivity")
    thresholds: tuple[float, ...] | None = _default("thresholds")
    seed_threshold: float = _default("seed_threshold")
    boundary_threshold: float = _default("boundary_threshold")
    foreground_threshold: float = _default("foreground_threshold")
    distance_threshold: float = _default("distance_threshold")
    seed_erosion: int = _default("seed_erosion")
    seed_depth: float = _default("seed_depth")
    seed_depth_radius: int = _default("seed_depth_radius")
    min_seed_size: int = _default("min_seed_size")
    halo: tuple[int, int, int] = _default("halo")

    def __post_init__(self) -> None:
        # JSON gives lists: keep tuples, so configs compare and hash by value
        if self.thresholds is not None:
            object.__setattr__(self, "thresholds", tuple(float(t) for t in self.thresholds))
        object.__setattr__(self, "halo", tuple(int(h) for h in self.halo))

    def check_ranges(self) -> None:
        """Raise ValueError naming the first setting outside its declared range."""
        check_values(self, SEGMENT)

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values (as recorded with the labels)."""
        values = asdict(self)
        values["thresholds"] = list(self.thresholds) if self.thresholds is not None else None
        values["halo"] = list(self.halo)
        return values

    @classmethod
    def tuned(
        cls, decoding: Mapping[str, Any] | None, fallback: SegmentConfig | None = None
    ) -> SegmentConfig:
        """A model's chosen decoding (``ModelConfig.decoding``) as a config.

        Parameters
        ----------
        decoding : mapping or None
            The model's decoding; its keys that are not post-processing
            settings (``tta`` is a prediction setting) are left out.
        fallback : SegmentConfig, optional
            What a model without a decoding uses; default
            :class:`SegmentConfig`'s defaults, which also fill in the settings
            a decoding does not name.
        """
        names = {f.name for f in fields(cls)}
        chosen = {k: v for k, v in (decoding or {}).items() if k in names}
        if not chosen:
            return fallback if fallback is not None else cls()
        return cls(**chosen)


#: Named decodings: the panel's choices and ``anatomics demo``'s fallback.
PRESETS: dict[str, SegmentConfig] = {
    # Seeds as thresholded: every seed region becomes one object.
    "as thresholded": SegmentConfig(),
    # Splits objects joined by a neck thin for their size where the model saw no
    # boundary; specks of low boundary inside an object do not split it.
    "split touching objects": SegmentConfig(seed_depth=0.5, min_seed_size=100),
}
