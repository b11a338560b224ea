"""The live preview: the training model's labels for what the viewer shows.

:func:`preview` predicts the visible slice or box with a model's weights (the
copies a running job publishes, :mod:`~napari_anatomics.train.live`, or any
model) through :class:`~napari_anatomics.predict.preview.Previewer`, and
decodes the maps as the model would: instance maps with the model's decoding
(:meth:`~napari_anatomics.segment.config.SegmentConfig.tuned` of
``config.decoding``, the defaults while a run has not chosen one) and the
post-processing of :mod:`~napari_anatomics.segment.postprocess`; semantic maps
as the most probable class, shown with its painted label value.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.progress import run_job
from ..models.config import ModelConfig
from ..predict.preview import Previewer
from ..segment.config import SegmentConfig
from ..segment.postprocess import postprocess


def preview(
    source: Any,
    config: ModelConfig,
    image: Any,
    *,
    z: int | None = None,
    box: Sequence[slice] | None = None,
    segment: SegmentConfig | None = None,
    previewer: Previewer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels of slice ``z`` or of ``box``, at full resolution.

    Parameters
    ----------
    source : state dict, torch.nn.Module or TrainedModel
        The weights (e.g. ``LiveWeights.state``).
    config : ModelConfig
        The model's config (e.g. ``LiveWeights.config``).
    image : Volume or array-like
        The (z, y, x) stack.
    z : int, optional
        The visible slice (a 3D model predicts and decodes the window-deep slab
        around it, and the slice is returned).
    box : sequence of 3 slices, optional
        The visible box instead.
    segment : SegmentConfig, optional
        Instance decoding; default the model's (``config.decoding``).
    previewer : Previewer, optional
        Reuse one between calls (its network is built once); default a new one
        on the CPU.

    Returns
    -------
    probabilities : ndarray of float32
        ``(C, y, x)`` for ``z``, ``(C, z, y, x)`` for ``box``.
    labels : ndarray
        ``(y, x)`` or ``(z, y, x)``: uint32 object ids (instance), or the
        painted label value of the most probable class (semantic, 0 = background).
    """
    previewer = previewer or Previewer(config)
    probs, region = previewer.probabilities(source, image, z=z, box=box, config=config)
    labels = decode_view(probs, config, segment)
    if z is None:
        return probs, labels
    k = int(z) - region[0].start
    return probs[:, k], labels[k]


def decode_view(
    probs: np.ndarray, config: ModelConfig, segment: SegmentConfig | None = None
) -> np.ndarray:
    """Labels of small ``(C, z, y, x)`` maps (in memory), decoded as :func:`preview` says.

    Parameters
    ----------
    probs : ndarray of float32, (C, z, y, x)
    config : ModelConfig
    segment : SegmentConfig, optional
        Instance decoding; default the model's.

    Returns
    -------
    ndarray, (z, y, x)
    """
    if config.task == "semantic":
        values = np.array([0, *config.label_values], dtype=np.int64)
        classes = np.argmax(probs, axis=0)
        dtype = np.min_scalar_type(int(values.max()))
        return values[np.minimum(classes, values.size - 1)].astype(dtype)
    decoding = segment or SegmentConfig.tuned(config.decoding)
    with tempfile.TemporaryDirectory(prefix="anatomics-preview-") as work:
        job = postprocess(
            probs, work, decoding, task="instance", channels=config.targets, overwrite=True
        )
        return np.asarray(run_job(job)[...])
