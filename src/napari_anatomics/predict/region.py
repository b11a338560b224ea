"""Predict one region of a stack: read, reduce, run tiles (with TTA), blend, restore.

:class:`RegionPredictor` turns a full-resolution region of a lazy stack into
blended probabilities (float32, ``(C, *region)``) following a
:class:`~napari_anatomics.predict.tiling.TilePlan`. Only the region's input (plus one
window of margin) and its accumulators are in memory. On CUDA, batches run
under autocast and the next batch is launched before the previous one's
results are copied back and blended, so copies and compute overlap.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Sequence

import numpy as np
import torch

from ..core.runtime import autocast_dtype
from ..models.config import normalize, per_stack, resolve_normalization
from ..models.store import TrainedModel
from .tiling import TilePlan, reflect_index

Transform = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def tta_transforms(n: int, window: Sequence[int]) -> list[Transform]:
    """Test-time augmentations as (forward, inverse) pairs on (B, C, Z, Y, X) tensors.

    ``n = 0`` (or 1): identity only. ``4``: flips of y and x. ``8``: the eight
    flips/rotations of the yx plane when the window is square in yx, otherwise
    the eight flips of z, y and x.
    """
    if n in (0, 1):
        return [(_identity, _identity)]
    if n == 4:
        return [_flip(dims) for dims in ((), (4,), (3,), (3, 4))]
    if n == 8:
        if window[1] == window[2]:
            out = []
            for flip in (False, True):
                for k in range(4):
                    out.append(_rot(k, flip))
            return out
        return [_flip(dims) for dims in ((), (4,), (3,), (3, 4), (2,), (2, 4), (2, 3), (2, 3, 4))]
    raise ValueError(f"tta must be 0, 4 or 8 (number of flips/rotations), not {n!r}")


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _flip(dims: tuple[int, ...]) -> Transform:
    if not dims:
        return (_identity, _identity)
    return (lambda t: torch.flip(t, dims), lambda t: torch.flip(t, dims))


def _rot(k: int, flip: bool) -> Transform:
    def forward(t: torch.Tensor) -> torch.Tensor:
        return torch.rot90(torch.flip(t, (4,)) if flip else t, k, (3, 4))

    def inverse(t: torch.Tensor) -> torch.Tensor:
        t = torch.rot90(t, -k, (3, 4))
        return torch.flip(t, (4,)) if flip else t

    return forward, inverse


def read_reflected(data, lo: Sequence[int], hi: Sequence[int]) -> np.ndarray:
    """Read ``data[lo:hi]`` (3D), mirroring indices that fall outside the array."""
    index = [reflect_index(np.arange(a, b), s) for a, b, s in zip(lo, hi, data.shape)]
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in index)
    block = data[box]
    if hasattr(block, "compute"):
        block = block.compute(scheduler="synchronous")
    block = np.asarray(block)
    if all(np.array_equal(i, np.arange(b.start, b.stop)) for i, b in zip(index, box)):
        return block
    return block[np.ix_(*[i - b.start for i, b in zip(index, box)])]


def block_mean(block: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Reduce a 3D block whose shape is a multiple of ``factors`` by block means."""
    (z, y, x), (fz, fy, fx) = block.shape, factors
    view = block.reshape(z // fz, fz, y // fy, fy, x // fx, fx)
    return view.mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def upsample(prob: np.ndarray, plan: TilePlan, mrange, region: Sequence[slice]) -> np.ndarray:
    """Linear interpolation of model-resolution maps onto a full-resolution region."""
    out = prob
    for axis, (sl, f, (lo, _), size) in enumerate(
        zip(region, plan.downsample, mrange, plan.model_shape)
    ):
        if f == 1:
            continue
        coord = (np.arange(sl.start, sl.stop) + 0.5) / f - 0.5
        i0 = np.floor(coord).astype(np.int64)
        w = (coord - i0).astype(np.float32)
        i1 = np.clip(i0 + 1, 0, size - 1) - lo
        i0 = np.clip(i0, 0, size - 1) - lo
        shape = [1] * out.ndim
        shape[axis + 1] = -1
        w = w.reshape(shape)
        out = np.take(out, i0, axis=axis + 1) * (1 - w) + np.take(out, i1, axis=axis + 1) * w
    return out


class RegionPredictor:
    """Blend a model's tiles over full-resolution regions of a stack.

    Parameters
    ----------
    model : TrainedModel
        Maps normalized (B, 1, Z, Y, X) batches to (B, C, Z, Y, X) probabilities.
    plan : TilePlan
        Tile geometry (window, stride, border, downsample, regions).
    tta : {0, 4, 8}
        Number of test-time flips/rotations.
    tta_mode : {"mean", "max"}
        How augmented predictions are combined.
    batch : int
        Tiles per network call.
    cache_mb : float
        Memory for predicted tiles that the next regions also need (0: none).
    precision : {"auto", "mixed", "float32"}
        Mixed precision (bfloat16 where supported, else float16, on CUDA;
        bfloat16 on the CPU) or float32; "auto" mixes on CUDA and on CPUs with
        bfloat16 hardware, where it halves the time per tile (probabilities
        move by 1e-5 on average, at most ~0.03). The resolved choice is
        ``self.precision``.
    normalization : dict, optional
        The stack's normalization (default: the model's). A per-stack one
        (:func:`~napari_anatomics.models.config.resolve_normalization`) is
        resolved from the stack at the first region, so every tile gets the same
        numbers; ``self.normalization`` holds the numbers used.
    """

    def __init__(
        self,
        model: TrainedModel,
        plan: TilePlan,
        *,
        tta: int = 0,
        tta_mode: str = "mean",
        batch: int = 1,
        cache_mb: float = 0.0,
        precision: str = "auto",
        normalization: dict | None = None,
    ) -> None:
        if tta_mode not in ("mean", "max"):
            raise ValueError(f"tta_mode must be 'mean' or 'max', not {tta_mode!r}")
        if int(batch) < 1:
            raise ValueError(f"batch must be a positive number of tiles, not {batch!r}")
        self.model, self.plan, self.batch, self.tta_mode = model, plan, int(batch), tta_mode
        self.tta = int(tta)
        chosen = model.config.normalization if normalization is None else normalization
        self.normalization = dict(chosen)
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}
        self._cache_uses: dict[tuple[int, int, int], list[int]] = {}  # later regions
        self._cache_bytes, self._cache_limit = 0, cache_mb * 2**20
        self.transforms = tta_transforms(int(tta), plan.window)
        self.channels = model.config.out_channels
        device = torch.device(model.device)
        self.cuda = device.type == "cuda"
        self.autocast = autocast_dtype(device, precision)
        if self.autocast is torch.float16 and torch.cuda.is_bf16_supported():
            self.autocast = torch.bfloat16
        self.precision = "float32" if self.autocast is None else "mixed"

    def region(
        self, data, region: Sequence[slice], index: int | None = None
    ) -> Generator[int, None, np.ndarray]:
        """Job over one region: yields tiles blended so far, returns ``(C, *region)`` float32.

        With ``index`` (the region's position in ``plan.regions``, processed in
        that order), tiles a later region also needs are kept in a cache of
        ``cache_mb`` so they are not predicted twice.
        """
        plan, window = self.plan, self.plan.window
        if per_stack(self.normalization):
            self.normalization = resolve_normalization(self.normalization, data)
        mrange = plan.model_range(region)
        tiles = plan.tiles_for(mrange)
        ready = {k: self._cache[t] for k, t in enumerate(tiles) if t in self._cache}
        todo = [k for k in range(len(tiles)) if k not in ready]
        size = [b - a for a, b in mrange]
        acc = np.zeros((self.channels, *size), dtype=np.float32)
        wsum = np.zeros(size, dtype=np.float32)
        blended = 0

        def blend_ready() -> int:
            nonlocal blended
            while blended < len(tiles) and blended in ready:  # fixed order: exact sums
                self._blend(acc, wsum, mrange, tiles[blended], ready.pop(blended))
                blended += 1
            return blended

        if todo:
            lo = [min(tiles[k][a] for k in todo) for a in range(3)]
            hi = [max(tiles[k][a] for k in todo) + window[a] for a in range(3)]
            f = plan.downsample
            raw = read_reflected(
                data, [a * k for a, k in zip(lo, f)], [b * k for b, k in zip(hi, f)]
            )
            # Raw grey values (uint8 stays uint8) at model resolution; tiles are
            # normalized batch by batch, so the region's input stays small.
            image = raw if all(k == 1 for k in f) else block_mean(raw, f)
            del raw
        pending = None
        for first in range(0, len(todo), self.batch):
            group = todo[first : first + self.batch]
            x = self._normalized(
                [
                    image[tuple(slice(t[a] - lo[a], t[a] - lo[a] + window[a]) for a in range(3))]
                    for t in (tiles[k] for k in group)
                ]
            )
            handle = self._submit(x)
            if pending is not None:
                self._collect(ready, tiles, index, *pending)
                yield blend_ready()
            pending = (group, handle)
        if pending is not None:
            self._collect(ready, tiles, index, *pending)
        yield blend_ready()
        if index is not None:
            for tile, uses in list(self._cache_uses.items()):
                while uses and uses[0] <= index:
                    uses.pop(0)
                if not uses:
                    self._uncache(tile)
        acc /= wsum
        return upsample(acc, plan, mrange, region)

    def _normalized(self, tiles) -> np.ndarray:
        """Stack raw tiles into a normalized float32 batch (B, 1, Z, Y, X)."""
        batch = np.stack(list(tiles))[:, None]
        return normalize(batch, self.normalization)

    def _collect(self, ready, tiles, index, group, handle) -> None:
        """Store a batch's predictions; cache those a later region needs."""
        for k, prob in zip(group, self._result(handle)):
            ready[k] = prob
            if index is None or self._cache_limit <= 0:
                continue
            later = [i for i in self.plan.regions_needing(tiles[k]) if i > index]
            if later:
                self._cache[tiles[k]] = prob.copy()
                self._cache_uses[tiles[k]] = later
                self._cache_bytes += prob.nbytes
        while self._cache_bytes > self._cache_limit:
            # Over budget: drop the tile needed furthest in the future (it is predicted again).
            self._uncache(max(self._cache_uses, key=lambda t: self._cache_uses[t][0]))

    def _uncache(self, tile) -> None:
        self._cache_bytes -= self._cache.pop(tile).nbytes
        del self._cache_uses[tile]

    def _blend(self, acc, wsum, mrange, tile, prob) -> None:
        window = self.plan.window
        dst, src = [], []
        for a in range(3):
            a0, a1 = max(tile[a], mrange[a][0]), min(tile[a] + window[a], mrange[a][1])
            dst.append(slice(a0 - mrange[a][0], a1 - mrange[a][0]))
            src.append(slice(a0 - tile[a], a1 - tile[a]))
        w = self.plan.weights(tile)[tuple(src)]
        acc[(slice(None), *dst)] += prob[(slice(None), *src)] * w
        wsum[tuple(dst)] += w

    def _submit(self, x: np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        if self.cuda:
            tensor = tensor.pin_memory().to(self.model.device, non_blocking=True)
        if self.autocast is not None:
            ctx = torch.autocast(tensor.device.type, dtype=self.autocast)
        else:
            ctx = contextlib.nullcontext()
        with ctx, torch.no_grad():
            out = None
            for forward, inverse in self.transforms:
                prob = inverse(self.model(forward(tensor))).float()
                if out is None:
                    out = prob
                elif self.tta_mode == "max":
                    out = torch.maximum(out, prob)
                else:
                    out = out + prob
            if self.tta_mode == "mean" and len(self.transforms) > 1:
                out = out / len(self.transforms)
        if not self.cuda:
            return out, None
        host = out.to("cpu", non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return host, event

    @staticmethod
    def _result(handle) -> np.ndarray:
        host, event = handle
        if event is not None:
            event.synchronize()
        return host.detach().cpu().numpy()
