"""A quick prediction of what the viewer shows: one slice, or a box.

:class:`Previewer` predicts the probabilities of the visible slice (2D
models: that slice; 3D models: the window-deep slab around it) or of a box of
a stack, at model resolution and restored to full resolution, with the tiles,
blending and normalization of :func:`~napari_anatomics.predict.tiled.predict`
(a :class:`~napari_anatomics.predict.region.RegionPredictor` over the region
only, no test-time augmentation, nothing written). Weights can change between
calls (a training run's live copies, :mod:`~napari_anatomics.train.live`):
the network is built once and the new weights loaded into it. Decoding the
maps into labels is :func:`napari_anatomics.train.preview.preview`'s part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..core.progress import run_job
from ..core.volume import Volume
from ..models import build_network
from ..models.config import ModelConfig
from ..models.store import TrainedModel
from .region import RegionPredictor
from .tiling import TilePlan

Box = tuple[slice, slice, slice]


def view_region(
    shape: Sequence[int],
    config: ModelConfig,
    z: int | None = None,
    box: Sequence[slice] | None = None,
) -> Box:
    """The full-resolution region to predict for slice ``z`` or for ``box`` of a stack.

    Parameters
    ----------
    shape : sequence of 3 int
        (z, y, x) of the stack.
    config : ModelConfig
        The model (its window and downsampling say how deep a 3D slab is).
    z : int, optional
        The visible slice: a 2D model predicts it alone, a 3D model the
        window-deep slab around it (within the stack).
    box : sequence of 3 slices, optional
        A (z, y, x) box instead (the visible box of a 3D view).

    Returns
    -------
    tuple of 3 slices

    Raises
    ------
    ValueError
        Unless exactly one of ``z`` and ``box`` is given, inside the stack.
    """
    nz, ny, nx = (int(s) for s in shape)
    if (z is None) == (box is None):
        raise ValueError("give either the slice z or a box to preview")
    if box is not None:
        region = tuple(slice(*sl.indices(n)[:2]) for sl, n in zip(box, (nz, ny, nx)))
        if len(region) != 3 or any(sl.stop <= sl.start for sl in region):
            raise ValueError(f"the box {box} holds no voxel of the stack {tuple(shape)}")
        return region  # type: ignore[return-value]
    if not 0 <= int(z) < nz:
        raise ValueError(f"slice {z} is outside the stack of {nz} slices")
    depth = 1 if config.spatial_dims == 2 else min(nz, config.window[0] * config.downsample[0])
    start = int(np.clip(int(z) - depth // 2, 0, nz - depth))
    return slice(start, start + depth), slice(0, ny), slice(0, nx)


class Previewer:
    """Quick probabilities of a slice or box for one model's config, weights that change.

    Parameters
    ----------
    config : ModelConfig
        The model's config (architecture, window, downsample, normalization, targets).
    device : str or torch.device
        Where the preview runs (default the CPU: a training run keeps its GPU).
    precision : {"auto", "mixed", "float32"}
        As for prediction (:class:`~napari_anatomics.predict.region.RegionPredictor`).
    batch : int
        Tiles per network call.
    """

    def __init__(
        self,
        config: ModelConfig,
        device: str | torch.device = "cpu",
        *,
        precision: str = "auto",
        batch: int = 2,
    ) -> None:
        self.config, self.device = config, torch.device(device)
        self.precision, self.batch = precision, int(batch)
        self._net: torch.nn.Module | None = None

    def model(self, source: Any, config: ModelConfig | None = None) -> TrainedModel:
        """A :class:`TrainedModel` for ``source``: a state dict, a network or a model.

        A state dict is loaded into the network this previewer keeps (built on
        first use); ``config`` replaces the previewer's (a newer copy of the
        same model's, e.g. with its decoding chosen).
        """
        if config is not None:
            self.config = config
        if isinstance(source, TrainedModel):
            return source
        if isinstance(source, torch.nn.Module):
            return TrainedModel(source.eval(), self.config, next(source.parameters()).device)
        if not isinstance(source, Mapping):
            raise TypeError(
                f"preview needs weights (a state dict), a network or a model, not {type(source)}"
            )
        if self._net is None:
            self._net = build_network(self.config).to(self.device)
        self._net.load_state_dict(source)
        return TrainedModel(self._net.eval(), self.config, self.device)

    def probabilities(
        self,
        source: Any,
        image: Any,
        *,
        z: int | None = None,
        box: Sequence[slice] | None = None,
        config: ModelConfig | None = None,
    ) -> tuple[np.ndarray, Box]:
        """Probabilities ``(C, *region)`` (float32, full resolution) and the region predicted.

        Parameters
        ----------
        source : state dict, torch.nn.Module or TrainedModel
            The weights (see :meth:`model`).
        image : Volume or array-like
            The (z, y, x) stack (lazy arrays are read only around the region).
        z, box
            What to predict (see :func:`view_region`).
        config : ModelConfig, optional
            A newer config of the same model.

        Returns
        -------
        probabilities : ndarray of float32, (C, z, y, x)
        region : tuple of 3 slices
            What they cover, full resolution (for ``z`` with a 3D model, the slab).
        """
        model = self.model(source, config)
        data = image.data if isinstance(image, Volume) else image
        region = view_region(data.shape, model.config, z, box)
        plan = TilePlan.create(
            data.shape,
            model.config.window,
            downsample=model.config.downsample,
            channels=model.config.out_channels,
        )
        predictor = RegionPredictor(model, plan, batch=self.batch, precision=self.precision)
        return run_job(predictor.region(data, region)), region

