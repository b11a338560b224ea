"""Tiled prediction of stacks larger than memory, streamed to zarr, resumable.

:func:`predict` runs a trained model over overlapping windows of a lazy
stack, blends the overlaps (see :mod:`~napari_anatomics.predict.tiling`) and writes
probability maps ``(C, Z, Y, X)`` at full resolution to a chunked zarr array.
The stack is processed region by region (blocks of output chunks): peak memory
grows with the region, tile and batch, never with the stack. Its settings
are a :class:`~napari_anatomics.predict.config.PredictConfig`; the maps are
stored as :mod:`~napari_anatomics.io.probabilities` says.

While running, the array lives under a hidden name ``.<component>.partial``
in the zarr group together with the list of finished regions, so a run that
was stopped (closed generator, cancel token, crash, Ctrl-C) resumes where it
stopped when started again with the same settings. When every region is
written the array is renamed to ``<component>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..core.blocks import Block, BlockRun, LocalExecutor, run_blocks
from ..core.files import replace_path
from ..core.progress import CancelToken, Job, Progress, relay
from ..core.runtime import torch_threads
from ..core.volume import Volume
from ..io.probabilities import attributes
from ..models.config import per_stack, resolve_normalization
from ..models.store import TrainedModel
from .config import PredictConfig
from .outputs import write_region
from .region import RegionPredictor
from .tiling import TilePlan


def partial_path_of(out: str | Path, component: str = "probabilities") -> Path:
    """Where :func:`predict` keeps the array of a run in progress (renamed when done).

    A viewer can open it read-only to show the prediction filling region by region.
    """
    return Path(out) / f".{component}.partial"


def predict(
    model: TrainedModel,
    image: Volume,
    out: str | Path,
    config: PredictConfig | None = None,
    *,
    component: str = "probabilities",
    security: Any = None,
    overwrite: bool = False,
    cancel: CancelToken | None = None,
    **settings: Any,
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
    config : PredictConfig, optional
        The settings (:data:`napari_anatomics.predict.config.SETTINGS` says
        what each does); default :class:`PredictConfig`'s. ``tta`` None is
        the model's choice (``decoding["tta"]``, else 0). ``device`` is the
        loader's business (:func:`~napari_anatomics.models.store.load_model`):
        the model runs where it is. ``scheduler`` (a dask.distributed address)
        lets the scheduler and its workers run code on this machine: use
        only a cluster you control.
    component : str
        Name of the array inside the group.
    security : distributed.security.Security, optional
        TLS settings for ``config.scheduler`` (a ``tls://`` address); default:
        dask's configuration (``distributed.comm.tls.*``).
    overwrite : bool
        Replace an existing finished array; otherwise it is an error unless it
        was written with the same settings (then it is returned as is).
    cancel : CancelToken, optional
        Checked between batches; a cancelled run returns None and can be resumed.
    **settings
        Fields of :class:`PredictConfig` that replace ``config``'s
        (``predict(model, image, out, tta=4)``).

    Yields
    ------
    Progress
        Per batch of tiles; when a region is written, ``payload`` holds its
        full-resolution (z, y, x) slices (the channel axis comes first in the array).

    Returns
    -------
    zarr.Array or None
        The finished ``(C, Z, Y, X)`` array (:mod:`~napari_anatomics.io.probabilities`
        format), None when cancelled.
    """
    import zarr

    config = replace(config or PredictConfig(), **settings)
    config.check_ranges()
    if image.ndim != 3:
        raise ValueError(
            f"{image.name}: prediction needs a 3D stack (z, y, x), got shape {image.shape}"
        )
    if not component or "/" in component or component.startswith("."):
        raise ValueError(f"component {component!r} must be a plain array name")
    tta = config.tta if config.tta is not None else int(model.config.decoding.get("tta", 0))
    output = config.output
    plan = TilePlan.create(
        image.shape,
        model.config.window,
        stride=config.stride,
        downsample=model.config.downsample,
        chunks=config.chunks,
        channels=model.config.out_channels,
        memory_mb=config.memory_mb,
        blend=config.blend,
    )
    # A model normalized per stack gets its numbers once, from a sample of the stack.
    normalization = resolve_normalization(model.config.normalization, image.data)
    predictor = RegionPredictor(
        model,
        plan,
        tta=tta,
        tta_mode=config.tta_mode,
        batch=config.batch,
        cache_mb=config.memory_mb,
        precision=config.precision,
        normalization=normalization,
    )
    recorded = {
        "shape": list(plan.shape),
        "window": list(plan.window),
        "stride": list(plan.stride),
        "border": list(plan.border),
        "downsample": list(plan.downsample),
        "chunks": list(plan.chunks),
        "region": list(plan.region),
        "blend": config.blend,
        "tta": int(tta),
        "tta_mode": config.tta_mode,
        "output": output,
        "precision": predictor.precision,
        "model": model_fingerprint(model),
        "source": image.source,
    }
    if per_stack(model.config.normalization):
        recorded["normalization"] = normalization
    group = zarr.open_group(str(out), mode="a")
    final_path, partial_path = Path(out) / component, partial_path_of(out, component)
    if component in group:
        if not overwrite and dict(group[component].attrs).get("prediction") == recorded:
            return group[component]
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds {component!r} predicted with other settings; "
                "choose another output or overwrite it (--overwrite)"
            )
    array, done = _open_partial(group, partial_path, plan, model.config, recorded, output, image)
    tiles_per_region = [len(plan.tiles_for(plan.model_range(r))) for r in plan.regions]
    total = sum(tiles_per_region)
    step = sum(tiles_per_region[i] for i in done)
    if done:
        yield Progress(step, total, f"resuming: {len(done)}/{len(plan.regions)} regions done")

    progress = {"step": step}

    def local_region(block: Block) -> Job[None]:
        """Predict and write one region here, reporting its tiles as they blend."""

        def tiles(done_here: int) -> Progress:
            message = f"region {len(done) + 1}/{len(plan.regions)}"
            return Progress(progress["step"] + done_here, total, message)

        job = predictor.region(image.data, block.write, block.index)
        probs = yield from relay(job, tiles)
        write_region(array, block.write, probs, output)

    def record(block: Block, _: Any) -> None:
        done.add(block.index)
        array.attrs["done_regions"] = sorted(done)
        progress["step"] += tiles_per_region[block.index]

    if config.scheduler is not None or config.workers is not None:
        from .distributed import cluster_executor

        runner = cluster_executor(
            model,
            predictor,
            image,
            str(partial_path),
            output,
            scheduler=config.scheduler,
            security=security,
            workers=config.workers,
        )
    else:
        runner = contextlib.nullcontext((LocalExecutor(), local_region, ()))
    threads = contextlib.nullcontext() if predictor.cuda else torch_threads(
        torch.device("cpu"), config.threads
    )
    with runner as (executor, process, args), threads:
        run = yield from _events(
            run_blocks(
                plan.blocks,
                process,
                args=args,
                done=lambda block: block.index in done,
                executor=executor,
                cancel=cancel,
                on_done=record,
                what="region",
            ),
            progress,
            total,
            len(plan.regions),
        )
    if run.cancelled:
        return None

    del array.attrs["done_regions"]
    replace_path(partial_path, final_path)
    return zarr.open_group(str(out), mode="r+")[component]


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
        **attributes(output, config.targets, config.task, config.classes, image.voxel_size),
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


def _events(run: Job[BlockRun], progress: dict, total: int, regions: int) -> Job[BlockRun]:
    """The engine's events in tiles: a finished region carries its box for the viewer."""

    def in_tiles(event: Progress) -> Progress | None:
        if isinstance(event.payload, Block):
            message = f"region {event.step}/{regions}"
            return Progress(progress["step"], total, message, payload=event.payload.write)
        return None if event.note else event  # the engine's "resuming": ours was said

    return (yield from relay(run, in_tiles))
