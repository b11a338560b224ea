"""Tiled prediction of stacks larger than memory, streamed to zarr, resumable.

:func:`predict` runs a trained model over overlapping windows of a lazy
stack, blends the overlaps (see :mod:`~napari_anatomics.predict.tiling`) and writes
probability maps ``(C, Z, Y, X)`` at full resolution to a chunked zarr array.
The stack is processed region by region (blocks of output chunks): peak memory
grows with the region, tile and batch, never with the stack.

While running, the array lives under a hidden name ``.<component>.partial``
in the zarr group together with the list of finished regions, so a run that
was stopped (closed generator, cancel token, crash, Ctrl-C) resumes where it
stopped when started again with the same settings. When every region is
written the array is renamed to ``<component>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.progress import CancelToken, Job, Progress
from ..core.runtime import cpu_threads
from ..core.volume import Volume
from ..models.store import TrainedModel
from .region import RegionPredictor
from .tiling import TilePlan

OUTPUTS = ("uint8", "float16", "float32")


def partial_path_of(out: str | Path, component: str = "probabilities") -> Path:
    """Where :func:`predict` keeps the array of a run in progress (renamed when done).

    A viewer can open it read-only to show the prediction filling region by region.
    """
    return Path(out) / f".{component}.partial"


def predict(
    model: TrainedModel,
    image: Volume,
    out: str | Path,
    *,
    stride: Sequence[int] | None = None,
    tta: int = 0,
    tta_mode: str = "mean",
    batch: int = 2,
    output: str = "uint8",
    component: str = "probabilities",
    chunks: Sequence[int] | None = None,
    memory_mb: float = 256.0,
    blend: str = "gaussian",
    threads: int | None = None,
    precision: str = "auto",
    scheduler: str | None = None,
    security: Any = None,
    workers: int | None = None,
    overwrite: bool = False,
    cancel: CancelToken | None = None,
) -> Job[Any]:
    """Predict probability maps for a whole stack, tile by tile, into zarr.

    Parameters
    ----------
    model : TrainedModel
        The network and its config (window, downsample, normalization, targets).
    image : Volume
        The (z, y, x) stack; read lazily, one region at a time.
    out : str or Path
        A zarr group (created if missing); the maps go to ``out/component``.
    stride : sequence of 3 int, optional
        Tile step (z, y, x) in model voxels; default: the window minus 25 %.
        Must not exceed the window.
    tta : {0, 4, 8}
        Test-time augmentation: none, 4 flips, or 8 flips/rotations.
    tta_mode : {"mean", "max"}
        How augmented predictions are combined.
    batch : int
        Tiles per network call. On CPUs PyTorch runs 3D convolutions of a
        batch of 1 on a slow path (about 4x slower), hence the default of 2.
    output : {"uint8", "float16", "float32"}
        Storage of the probabilities: uint8 (``p * 255``, rounded) or float.
    component : str
        Name of the array inside the group.
    chunks : sequence of 3 int, optional
        Output chunk (z, y, x), default (32, 256, 256) clipped to the stack.
    memory_mb : float
        Budget for one processing region (a block of chunks), which sets its
        size, and again for predicted tiles kept for the next regions (tiles
        straddling region borders are predicted once while this cache holds them).
    blend : {"gaussian", "linear"}
        Weight profile used to blend overlapping tiles.
    threads : int, optional
        Torch CPU threads (default: all cores); ignored on CUDA.
    precision : {"auto", "mixed", "float32"}
        Mixed precision (bfloat16 on the CPU) or float32; "auto" mixes on CUDA
        and on CPUs with bfloat16 hardware (twice as fast there).
    scheduler : str, optional
        Address of a dask.distributed scheduler to run regions on. dask sends
        pickled objects both ways, so the scheduler and its workers can run
        code on this machine: use only a cluster you control.
    security : distributed.security.Security, optional
        TLS settings for ``scheduler`` (a ``tls://`` address); default: dask's
        configuration (``distributed.comm.tls.*``).
    workers : int, optional
        Start a local cluster of this many worker processes instead.
    overwrite : bool
        Replace an existing finished array; otherwise it is an error unless it
        was written with the same settings (then it is returned as is).
    cancel : CancelToken, optional
        Checked between batches; a cancelled run returns None and can be resumed.

    Yields
    ------
    Progress
        Per batch of tiles; when a region is written, ``payload`` holds its
        full-resolution (z, y, x) slices (the channel axis comes first in the array).

    Returns
    -------
    zarr.Array or None
        The finished ``(C, Z, Y, X)`` array, None when cancelled.
    """
    import zarr

    if image.ndim != 3:
        raise ValueError(
            f"{image.name}: prediction needs a 3D stack (z, y, x), got shape {image.shape}"
        )
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, not {output!r}")
    if not component or "/" in component or component.startswith("."):
        raise ValueError(f"component {component!r} must be a plain array name")
    if scheduler is not None and workers is not None:
        raise ValueError("give either a scheduler address or a number of workers, not both")
    config = model.config
    plan = TilePlan.create(
        image.shape,
        config.window,
        stride=stride,
        downsample=config.downsample,
        chunks=chunks,
        channels=config.out_channels,
        memory_mb=memory_mb,
        blend=blend,
    )
    predictor = RegionPredictor(
        model,
        plan,
        tta=tta,
        tta_mode=tta_mode,
        batch=batch,
        cache_mb=memory_mb,
        precision=precision,
    )
    settings = {
        "shape": list(plan.shape),
        "window": list(plan.window),
        "stride": list(plan.stride),
        "border": list(plan.border),
        "downsample": list(plan.downsample),
        "chunks": list(plan.chunks),
        "region": list(plan.region),
        "blend": blend,
        "tta": int(tta),
        "tta_mode": tta_mode,
        "output": output,
        "precision": predictor.precision,
        "model": model_fingerprint(model),
        "source": image.source,
    }
    group = zarr.open_group(str(out), mode="a")
    final_path, partial_path = Path(out) / component, partial_path_of(out, component)
    if component in group:
        if not overwrite and dict(group[component].attrs).get("prediction") == settings:
            return group[component]
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds {component!r} predicted with other settings; "
                "choose another output or overwrite it (--overwrite)"
            )
    array, done = _open_partial(group, partial_path, plan, config, settings, output, image)
    todo = [i for i in range(len(plan.regions)) if i not in done]
    tiles_per_region = [len(plan.tiles_for(plan.model_range(r))) for r in plan.regions]
    total = sum(tiles_per_region)
    step = sum(tiles_per_region[i] for i in done)
    if done:
        yield Progress(step, total, f"resuming: {len(done)}/{len(plan.regions)} regions done")

    if scheduler is not None or workers is not None:
        from .distributed import predict_regions

        events = predict_regions(
            model,
            predictor,
            image,
            str(partial_path),
            todo,
            output,
            scheduler=scheduler,
            security=security,
            workers=workers,
        )
        for index in events:
            done.add(index)
            array.attrs["done_regions"] = sorted(done)
            step += tiles_per_region[index]
            yield Progress(
                step,
                total,
                f"region {len(done)}/{len(plan.regions)}",
                payload=plan.regions[index],
            )
            if cancel is not None and cancel.cancelled:
                events.close()
                return None
    else:
        previous = torch.get_num_threads()
        if not predictor.cuda:
            torch.set_num_threads(cpu_threads(threads))
        try:
            for index in todo:
                region = plan.regions[index]
                job = predictor.region(image.data, region, index)
                while True:
                    try:
                        tiles_done = next(job)
                    except StopIteration as stop:
                        probs = stop.value
                        break
                    yield Progress(
                        step + tiles_done,
                        total,
                        f"region {len(done) + 1}/{len(plan.regions)}",
                    )
                    if cancel is not None and cancel.cancelled:
                        return None
                write_region(array, region, probs, output)
                done.add(index)
                array.attrs["done_regions"] = sorted(done)
                step += tiles_per_region[index]
                yield Progress(
                    step, total, f"region {len(done)}/{len(plan.regions)}", payload=region
                )
        finally:
            torch.set_num_threads(previous)

    if component in group:
        shutil.rmtree(final_path)
    del array.attrs["done_regions"]
    os.replace(partial_path, final_path)
    return zarr.open_group(str(out), mode="r+")[component]


def write_region(array, region: Sequence[slice], probs: np.ndarray, output: str) -> None:
    """Quantize ``(C, *region)`` float32 probabilities (in place) and write them."""
    if output == "uint8":  # in place: no full-size temporaries
        np.clip(probs, 0.0, 1.0, out=probs)
        probs *= 255.0
        data = np.rint(probs, out=probs).astype(np.uint8)
    else:
        data = probs.astype(output)
    array[(slice(None), *region)] = data


def model_fingerprint(model: TrainedModel) -> dict[str, Any]:
    """Identify a model: its name, folder and a hash of its weights."""
    digest = hashlib.sha1()
    for name, tensor in model.net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {
        "name": model.config.name,
        "folder": str(model.folder) if model.folder else None,
        "task": model.config.task,
        "weights_sha1": digest.hexdigest(),
    }


def _open_partial(group, path: Path, plan, config, settings, output, image):
    """Open the partial array of an interrupted run with the same settings, or start one."""
    name = path.name
    if name in group:
        array = group[name]
        attrs = dict(array.attrs)
        if attrs.get("prediction") == settings:
            return array, set(attrs.get("done_regions", []))
        shutil.rmtree(path)
    from zarr.codecs import BloscCodec

    channels = config.out_channels
    attrs = {
        "prediction": settings,
        "voxel_size_nm": list(image.voxel_size),
        "axes": ["c", "z", "y", "x"],
        "channels": list(config.targets),
        "task": config.task,
        "classes": list(config.classes),
        "encoding": "probability = value / 255" if output == "uint8" else "probability",
        "done_regions": [],
    }
    array = group.create_array(
        name=name,
        shape=(channels, *plan.shape),
        chunks=(channels, *plan.chunks),
        dtype=output,
        fill_value=0,
        compressors=BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
        attributes=attrs,
    )
    return array, set()
