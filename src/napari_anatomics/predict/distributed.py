"""Run a tiled prediction's regions on a dask.distributed cluster.

Every region of a :class:`~napari_anatomics.predict.tiling.TilePlan` is a
:class:`~napari_anatomics.core.blocks.Block` that covers whole output chunks, so
workers predict and write regions of the same zarr array without coordination:
the regions go through the blockwise engine's
:class:`~napari_anatomics.core.blocks.DaskExecutor`. Each worker process loads the model
once: from its model folder when it has one (workers must see the folder,
e.g. on a shared file system), otherwise from one broadcast copy of the
network. The client only records which regions are done (for resuming).

See ``docs/cluster.md`` for SLURM / PBS clusters through dask-jobqueue.

Trust: dask serialises tasks and results with pickle, so the scheduler and
workers can run code on the client's machine (and the client on theirs).
Connect only to a scheduler you control; on a shared network use TLS
(``security``: a :class:`distributed.security.Security`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..core.blocks import Block, DaskExecutor
from ..core.progress import run_job
from ..core.volume import Volume
from ..models.store import TrainedModel
from .outputs import write_region
from .region import RegionPredictor

#: Models loaded by this worker process, keyed by model folder.
_WORKER_MODELS: dict[str, TrainedModel] = {}
#: Images opened by this worker process, keyed by source path.
_WORKER_IMAGES: dict[str, Any] = {}


class _Source:
    """Where workers get the image: its file (reopened once per worker) or the array itself.

    An opaque holder, so dask ships the lazy array as data, not as a graph to compute.
    """

    def __init__(self, volume: Volume) -> None:
        self.path = volume.source if volume.source and _is_file(volume.source) else None
        self.array = None if self.path else volume.data

    @property
    def data(self) -> Any:
        if self.path is None:
            return self.array
        if self.path not in _WORKER_IMAGES:
            from ..io.read import open_volume

            _WORKER_IMAGES[self.path] = open_volume(self.path).data
        return _WORKER_IMAGES[self.path]


def _is_file(source: str) -> bool:
    from ..io.read import split_key

    return split_key(source)[0].exists()


@contextlib.contextmanager
def cluster_executor(
    model: TrainedModel,
    predictor: RegionPredictor,
    image: Volume,
    array_path: str,
    output: str,
    *,
    scheduler: str | None = None,
    security: Any = None,
    workers: int | None = None,
) -> Iterator[tuple[DaskExecutor, Callable[..., None], tuple]]:
    """A cluster to predict regions on: yields ``(executor, process, args)`` for run_blocks.

    ``run_blocks(plan.blocks, process, args=args, executor=executor)`` then predicts and
    writes each region (a block of ``predictor.plan``) on a worker.

    Parameters
    ----------
    model : TrainedModel
        Shipped by folder when ``model.folder`` is set, else broadcast once.
    predictor : RegionPredictor
        Its plan, TTA and batch settings are reused on the workers.
    image : Volume
        The stack. Workers reopen its source file (which must be on a file
        system they share); an image without a file is sent as an array.
    array_path : str
        The zarr array (C, Z, Y, X) to write into.
    output : {"uint8", "float16", "float32"}
        Storage dtype.
    scheduler : str, optional
        Scheduler address (``tcp://host:8786``, or ``tls://host:8786`` with
        ``security``). dask moves pickled objects between the client, the
        scheduler and the workers, so a scheduler you do not control can run
        code on this machine: connect only to your own cluster.
    security : distributed.security.Security, optional
        TLS certificates for the connection to ``scheduler`` (see
        ``docs/cluster.md``); default: dask's configuration.
    workers : int, optional
        Number of local worker processes when no scheduler is given.
    """
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler is not None:
        client = Client(scheduler, security=security) if security else Client(scheduler)
    else:
        if workers is None or int(workers) < 1:
            raise ValueError(f"workers must be a positive number of processes, not {workers!r}")
        cluster = LocalCluster(
            n_workers=int(workers),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    try:
        spec = _model_spec(model, client)
        source = client.scatter(_Source(image), broadcast=True)
        settings = (
            predictor.plan,
            predictor.tta,
            predictor.tta_mode,
            predictor.batch,
            predictor.precision,
            output,
            predictor.normalization,
        )
        yield DaskExecutor(client), _run_region, (spec, source, settings, array_path)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _model_spec(model: TrainedModel, client) -> tuple[str, Any]:
    from ..models import store as model_store

    if model.folder is not None and hasattr(model_store, "load_model"):
        return ("folder", str(model.folder))
    return ("object", client.scatter(model, broadcast=True))


def _worker_model(spec: tuple[str, Any]) -> TrainedModel:
    kind, value = spec
    if kind == "object":
        model = value
        key = f"object-{id(value)}"
    else:
        key = value
        model = _WORKER_MODELS.get(key)
        if model is None:
            from ..models.store import load_model

            model = load_model(value, device="auto")
    if key not in _WORKER_MODELS:
        _WORKER_MODELS[key] = model
        _set_worker_threads()
    return model


def _set_worker_threads() -> None:
    import torch
    from distributed import get_worker

    try:
        torch.set_num_threads(max(1, int(get_worker().state.nthreads)))
    except (ValueError, AttributeError):  # not running inside a worker
        pass


def _run_region(block: Block, spec, source: _Source, settings, array_path: str) -> None:
    """Predict and write one region on a worker."""
    import zarr

    plan, tta, tta_mode, batch, precision, output, normalization = settings
    model = _worker_model(spec)
    predictor = RegionPredictor(
        model, plan, tta=tta, tta_mode=tta_mode, batch=batch, precision=precision,
        normalization=normalization,
    )
    probs = run_job(predictor.region(source.data, block.write))
    write_region(zarr.open_array(array_path, mode="r+"), block.write, probs, output)
