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
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.progress import run_job
from ..models.config import ModelConfig
from ..predict.preview import Previewer, view_region
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


@dataclass(frozen=True)
class PreviewResult:
    """One preview of a running job's weights.

    Attributes
    ----------
    labels : ndarray
        ``(y, x)`` for a slice, ``(z, y, x)`` for a box (see :func:`preview`).
    region : tuple of 3 slices
        Where ``labels`` go in the stack (one slice deep for a slice).
    version, iteration : int
        The published weights used (:class:`~napari_anatomics.train.live.LiveWeights`).
    seconds : float
        How long the preview took.
    """

    labels: np.ndarray
    region: tuple[slice, slice, slice]
    version: int
    iteration: int
    seconds: float

    @property
    def stack(self) -> np.ndarray:
        """``labels`` as (z, y, x): a slice is one slice deep, like ``region``."""
        return self.labels if self.labels.ndim == 3 else self.labels[None]


class LivePreview:
    """When and what to preview during a run: the view asked for, the newest weights.

    A front end (the Train panel, a scripted user) says what is visible
    (:meth:`show`), asks :meth:`due` on a timer and calls :meth:`run` off its
    GUI thread when it is. A new view is due at once; newer weights are due
    once the time since the last preview is at least ``(1 / duty - 1)`` times
    what that preview took, so previews take at most ``duty`` of one core
    however slow the machine (they run beside training, which never waits).

    Parameters
    ----------
    session : LiveSession
        The running job's session (its published weights).
    image : Volume or array-like
        The (z, y, x) stack being trained on.
    duty : float
        Largest share of the time spent previewing new weights (0 < duty <= 1).
    segment : SegmentConfig, optional
        Instance decoding; default the model's.
    """

    def __init__(
        self, session: Any, image: Any, *, duty: float = 0.1,
        segment: SegmentConfig | None = None,
    ) -> None:
        if not 0 < duty <= 1:
            raise ValueError(f"duty must be in (0, 1], not {duty}")
        self.session, self.image, self.duty, self.segment = session, image, duty, segment
        self._lock = threading.Lock()
        self._view: tuple[int | None, tuple[slice, ...] | None] | None = None
        self._shown: tuple[Any, int] | None = None
        self._ended_at = -np.inf
        self._cost = 0.0
        self._previewer: Previewer | None = None

    def show(self, z: int | None = None, box: Sequence[slice] | None = None) -> None:
        """The visible slice ``z`` (2D view) or ``box`` (3D view) to preview."""
        with self._lock:
            self._view = (None if z is None else int(z), None if box is None else tuple(box))

    def due(self) -> bool:
        """Whether :meth:`run` would show something new now."""
        weights = self.session.weights()
        with self._lock:
            if weights is None or self._view is None:
                return False
            if self._shown is None or self._shown[0] != self._view:
                return True
            wait = self._cost * (1 / self.duty - 1)
            fresh = weights.version > self._shown[1]
            return fresh and time.monotonic() - self._ended_at >= wait

    def run(self) -> PreviewResult | None:
        """Preview the asked view with the newest weights (None before any weights)."""
        weights = self.session.weights()
        with self._lock:
            view = self._view
        if weights is None or view is None:
            return None
        start = time.monotonic()
        if self._previewer is None:
            self._previewer = Previewer(weights.config)
        z, box = view
        _, labels = preview(
            weights.state, weights.config, self.image, z=z, box=box,
            segment=self.segment, previewer=self._previewer,
        )
        shape = getattr(self.image, "shape", None) or np.shape(self.image)
        region = (
            (slice(z, z + 1), slice(0, shape[1]), slice(0, shape[2])) if z is not None
            else view_region(shape, weights.config, box=box)
        )
        end = time.monotonic()
        with self._lock:
            self._shown, self._ended_at, self._cost = (view, weights.version), end, end - start
        return PreviewResult(labels, region, weights.version, weights.iteration, end - start)
