"""The live loop: slices painted while training runs join it, and its weights come out.

A :class:`LiveSession` is shared, thread-safe, between a running
:func:`~napari_anatomics.train.loop.train` job and its front end (the Train
panel):

* front end -> job: :meth:`LiveSession.update_labels` (or
  :meth:`LiveSession.update`) hands over newly painted or corrected
  full-resolution z slices. A slice with any painted voxel is annotated; a
  slice of zeros is unknown (erasing a slice takes it out of the training).
  Between two steps the job applies what is pending to its sampler
  (:meth:`~napari_anatomics.train.sampler.CropSampler.add_slices`), says so in a
  note ("slices 4, 7 joined the training ...") and records it
  (:attr:`LiveSession.joined`, the model's ``config.json``).
* job -> front end: while the preview is on (:attr:`LiveSession.enabled`) the
  job publishes a CPU copy of the network weights (their moving average over
  the last ~20 steps, :attr:`LiveSession.average`) at most every
  ``publish_every_s`` seconds (:meth:`LiveSession.weights`,
  :meth:`LiveSession.wait_for_weights`), which
  :func:`~napari_anatomics.train.preview.preview` turns into the view's
  prediction, so training never waits for a preview. :meth:`LiveSession.crops`
  says how many training crops held a slice.

:class:`LiveRun` is the job's side (used by the loop). The held-out tiles and
the validation crops stay as they were (a slice painted inside a held-out tile
stays held out, and the validation curve stays comparable); the decoding
chosen after training sees the slices that joined. AdamW's moments and the
learning-rate schedule continue when slices join: on the bundled sample (2D
defaults, 300 steps, 3 slices joining at step 150 to the 2 painted, scored on
the 5 never painted, seeds 0 and 1), continuing gave Dice 0.910 / 0.918 and
AP@0.5 0.561 / 0.559, a 25-step re-warmup 0.911 / 0.916 and 0.557 / 0.563: no
difference, so nothing restarts.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from ..core.progress import Progress
from ..core.volume import Volume
from ..models.config import ModelConfig
from .sampler import CropSampler


@dataclass(frozen=True)
class LiveWeights:
    """One published copy of the network weights.

    Attributes
    ----------
    state : dict of str to torch.Tensor
        A CPU state dict (the job's network is never shared).
    iteration : int
        The training step the copy was taken after.
    config : ModelConfig
        The model's config then (window, downsample, normalization, targets, decoding).
    version : int
        1 for the first copy, then one more per copy.
    """

    state: dict[str, torch.Tensor]
    iteration: int
    config: ModelConfig
    version: int


@dataclass(frozen=True)
class Joined:
    """Painted slices that a running job took in (see :class:`LiveSession`).

    Attributes
    ----------
    iteration : int
        The step after which they joined.
    slices : tuple of int
        The full-resolution slices received.
    joined, changed, left : tuple of int
        Full-resolution slices that became annotated, were corrected, or were erased.
    annotated : int
        Annotated slices (model resolution) from then on.
    message : str
        The note the job gave.
    """

    iteration: int
    slices: tuple[int, ...]
    joined: tuple[int, ...]
    changed: tuple[int, ...]
    left: tuple[int, ...]
    annotated: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Plain values for ``config.json``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class LiveSession:
    """Shared state of a running training job and its front end (thread-safe).

    Parameters
    ----------
    preview : bool
        Publish weights for the preview (:attr:`enabled`; can be switched any time).
    publish_every_s : float
        Least time between two published copies of the weights.
    average : float
        The published weights are an exponential moving average of the
        training weights with this decay per step (0: the weights as they are).
        A run in the middle of its schedule moves with a high learning rate:
        the average shows what it has learnt rather than its last step (see
        ``benchmarks/interactive_loop.py``).
    """

    def __init__(
        self, preview: bool = True, publish_every_s: float = 3.0, average: float = 0.95
    ) -> None:
        if not 0 <= average < 1:
            raise ValueError(f"average must be in [0, 1), not {average}")
        self.publish_every_s, self.average = float(publish_every_s), float(average)
        self._lock = threading.Condition()
        self._enabled = bool(preview)
        self._pending: dict[int, np.ndarray] = {}
        self._weights: LiveWeights | None = None
        self._published_at = -np.inf
        self._joined: list[Joined] = []
        self._uses = np.zeros(0, np.int64)
        self._fz = 1

    @property
    def enabled(self) -> bool:
        """Whether the job publishes weights (the preview is on)."""
        with self._lock:
            return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        with self._lock:
            if value and not self._enabled:
                self._published_at = -np.inf  # a fresh copy at the next step
            self._enabled = bool(value)

    # Front end -> job.

    def update_labels(self, z_slices: Sequence[int], labels_slices: Iterable[Any]) -> None:
        """Hand over painted full-resolution slices (a later copy of a slice replaces one pending).

        Parameters
        ----------
        z_slices : sequence of int
            Full-resolution z indices.
        labels_slices : iterable of array-like
            The (y, x) labels of each slice (copied), 0 = not painted.
        """
        copies = {int(z): np.array(s, copy=True) for z, s in zip(z_slices, labels_slices)}
        with self._lock:
            self._pending.update(copies)

    def update(self, labels: Any, changed_z: Iterable[int]) -> None:
        """Hand over slices ``changed_z`` of a full (z, y, x) labels volume."""
        zs = sorted({int(z) for z in changed_z})
        self.update_labels(zs, (np.asarray(labels[z]) for z in zs))

    @property
    def pending(self) -> list[int]:
        """Slices handed over that the job has not taken yet."""
        with self._lock:
            return sorted(self._pending)

    # Job -> front end.

    def weights(self) -> LiveWeights | None:
        """The latest published weights (None before the first)."""
        with self._lock:
            return self._weights

    def wait_for_weights(
        self, newer_than: int = 0, timeout: float | None = None
    ) -> LiveWeights | None:
        """Wait for weights with a ``version`` above ``newer_than``; None on timeout."""
        with self._lock:
            self._lock.wait_for(
                lambda: self._weights is not None and self._weights.version > newer_than,
                timeout,
            )
            weights = self._weights
        return weights if weights is not None and weights.version > newer_than else None

    @property
    def joined(self) -> list[Joined]:
        """The painted slices the job took in, in order."""
        with self._lock:
            return list(self._joined)

    def crops(self, z: int) -> int:
        """Training crops so far that held full-resolution slice ``z`` (0 when not annotated)."""
        with self._lock:
            zm = int(z) // self._fz
            return int(self._uses[zm]) if 0 <= zm < self._uses.size else 0

    # The job's side (see LiveRun).

    def take_labels(self) -> dict[int, np.ndarray]:
        """The pending slices, handed to the job (the session forgets them)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def due(self) -> bool:
        """Whether the job should publish weights now."""
        with self._lock:
            return self._enabled and time.monotonic() - self._published_at >= self.publish_every_s

    def publish(
        self, net: torch.nn.Module | dict[str, torch.Tensor], iteration: int, config: ModelConfig
    ) -> LiveWeights:
        """Publish a CPU copy of the weights of ``net`` (or a state dict) after ``iteration``."""
        source = net.state_dict() if isinstance(net, torch.nn.Module) else net
        state = {k: v.detach().to("cpu", copy=True) for k, v in source.items()}
        snapshot = copy.deepcopy(config)
        with self._lock:
            version = self._weights.version + 1 if self._weights is not None else 1
            self._weights = LiveWeights(state, int(iteration), snapshot, version)
            self._published_at = time.monotonic()
            self._lock.notify_all()
            return self._weights

    def _record(self, joined: Joined) -> None:
        with self._lock:
            self._joined.append(joined)

    def _count(self, uses: np.ndarray, fz: int) -> None:
        with self._lock:
            self._uses, self._fz = uses.copy(), int(fz)


class LiveRun:
    """The job's side of a :class:`LiveSession`: take slices in, publish weights.

    Parameters
    ----------
    session : LiveSession
    sampler : CropSampler
        The running job's sampler (its data takes the slices).
    total : int
        The run's iterations (for the notes' progress).
    """

    def __init__(self, session: LiveSession, sampler: CropSampler, total: int) -> None:
        self.session, self.sampler, self.total = session, sampler, total
        self.painted: dict[int, np.ndarray] = {}
        self._average: dict[str, torch.Tensor] | None = None
        self._steps = 0

    def step(self, net: torch.nn.Module, iteration: int, config: ModelConfig) -> Progress | None:
        """Between two steps: apply pending slices (a note when they changed the data),
        publish weights when due."""
        fz = self.sampler.data.downsample[0]
        self.session._count(self.sampler.uses, fz)
        note = None
        pending = self.session.take_labels()
        if pending:
            note = self._apply(pending, iteration, fz)
        self._update_average(net)
        if self.session.due():
            self.session.publish(self._average or net, iteration, config)
        return note

    @torch.no_grad()
    def _update_average(self, net: torch.nn.Module) -> None:
        """The moving average of the weights (a warm-up decay while it has few steps)."""
        decay = min(self.session.average, (1 + self._steps) / (10 + self._steps))
        self._steps += 1
        if decay <= 0:
            self._average = None
            return
        state = net.state_dict()
        if self._average is None:
            self._average = {k: v.detach().clone() for k, v in state.items()}
            return
        for key, value in state.items():
            kept = self._average[key]
            if kept.is_floating_point():
                kept.lerp_(value.detach(), 1 - decay)
            else:  # counters (batch norm's steps)
                kept.copy_(value)

    def _apply(self, pending: dict[int, np.ndarray], iteration: int, fz: int) -> Progress | None:
        try:
            update = self.sampler.add_slices(pending)
        except ValueError as err:
            message = f"painted {_names(pending)} not taken: {err}"
            return Progress(iteration, self.total, message, note=True)
        self.painted.update(pending)
        if not update.any:
            return None
        full = [tuple(z for z in update.received if z // fz in zs)
                for zs in (update.joined, update.changed, update.left)]
        parts = [f"{_names(zs)} {verb}" for zs, verb in zip(
            full, ("joined the training", "corrected", "erased (left the training)")) if zs]
        message = (f"{'; '.join(parts)} at iteration {iteration} "
                   f"(now {update.annotated} painted slices)")
        self.session._record(Joined(iteration, update.received, *full, update.annotated,
                                    message))
        return Progress(iteration, self.total, message, note=True)

    def labels(self, labels: Volume) -> Volume:
        """``labels`` with the slices taken in painted over it (for tuning the decoding)."""
        if not self.painted:
            return labels
        planes = self.painted.values()
        values = [v for p in planes if p.size for v in (p.min(), p.max())]
        dtype = np.result_type(labels.dtype, *map(np.min_scalar_type, values))
        data = labels.data.astype(dtype).copy()  # a new array: ``labels`` stays as it was
        for z, plane in sorted(self.painted.items()):
            data[z] = plane
        return replace(labels, data=data)


def _names(zs: Iterable[int]) -> str:
    """``slice 4`` or ``slices 4, 7``."""
    zs = sorted(zs)
    return f"slice{'s' if len(zs) > 1 else ''} {', '.join(str(z) for z in zs)}"
