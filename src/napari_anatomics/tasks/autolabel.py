"""Auto-label a stack: predict, post-process, record what was done. One job for all.

:func:`autolabel` is what ``anatomics predict``, the Auto-label panel, ``anatomics
demo`` and the benchmarks run: a tiled prediction
(:func:`~napari_anatomics.predict.tiled.predict`, resumable: started again with
the same settings it continues where it stopped), then the labels
(:func:`~napari_anatomics.segment.postprocess.postprocess`), with the provenance
(the model's fingerprint and config, the image, the voxel size and both jobs'
settings) written into the output group's attributes. Labels already in the
output (perhaps proofread by hand) are kept unless ``overwrite`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.progress import CancelToken, Job, Progress, stage
from ..core.volume import Volume
from ..io.omezarr import is_ome_zarr, write_ome_zarr_job
from ..io.outputs import safe_file_name
from ..models.store import TrainedModel, load_model
from ..predict.config import PredictConfig
from ..predict.tiled import model_fingerprint
from ..predict.tiled import predict as predict_maps
from ..segment.config import SegmentConfig
from ..segment.postprocess import postprocess

#: Names of the arrays in the output group.
PROBABILITIES, LABELS = "probabilities", "labels"


@dataclass
class AutoLabelResult:
    """What :func:`autolabel` wrote.

    Attributes
    ----------
    probabilities : zarr.Array
        The ``(C, Z, Y, X)`` maps.
    labels : zarr.Array or None
        The labels; None when not asked for, or when labels that were kept
        cannot be opened.
    kept : bool
        The labels were already in the output and were kept.
    model : TrainedModel
        The model that predicted.
    segment : SegmentConfig or None
        The decoding used (None when no labels were made).
    ome_zarr : list of Path
        The OME-Zarr images written, when asked: the probabilities, then the labels.
    """

    probabilities: Any
    labels: Any
    kept: bool
    model: TrainedModel
    segment: SegmentConfig | None = None
    ome_zarr: list[Path] = field(default_factory=list)


def autolabel(
    image: Volume,
    model: TrainedModel | str | Path,
    out: str | Path,
    *,
    predict: PredictConfig | None = None,
    segment: SegmentConfig | None = None,
    label: bool = True,
    overwrite: bool = False,
    security: Any = None,
    ome_zarr: str | Path | None = None,
    cancel: CancelToken | None = None,
) -> Job[AutoLabelResult | None]:
    """Predict ``image`` with ``model`` into the zarr group ``out``, then label objects.

    Parameters
    ----------
    image : Volume
        The (z, y, x) stack.
    model : TrainedModel or path
        A loaded model, or a model folder (loaded on ``predict.device``).
    out : str or Path
        The output zarr group: ``probabilities`` and ``labels`` go there.
    predict : PredictConfig, optional
        Prediction settings; default :class:`PredictConfig`'s (``tta``: the model's).
    segment : SegmentConfig, optional
        The decoding; default the model's tuned one
        (:meth:`SegmentConfig.tuned` of ``model.config.decoding``).
    label : bool
        Post-process; False writes the probabilities only.
    overwrite : bool
        Replace earlier probabilities and labels in ``out``. Without it an
        unfinished prediction with the same settings resumes, and labels
        already there are kept (they may hold corrections).
    security : distributed.security.Security, optional
        TLS for ``predict.scheduler``.
    ome_zarr : str or Path, optional
        Also write the results as multiscale OME-Zarr (NGFF 0.4, axes in nm): the labels
        into the ``labels/`` group of this OME-Zarr image when it is one (named after the
        model), else as an OME-Zarr of their own at this path (``.ome.zarr``); the
        probabilities (a channel axis) beside it (:func:`ome_zarr_targets`).
    cancel : CancelToken, optional
        A cancelled run returns None; started again, the prediction resumes.

    Yields
    ------
    Progress
        The prediction's events as ``predict: ...`` (a written region's
        slices as ``payload``), one event whose ``payload`` is
        ``{"probabilities": array}`` when the maps are finished, then the
        post-processing's as ``postprocess: ...``.

    Returns
    -------
    AutoLabelResult or None
        None when cancelled.
    """
    import zarr

    settings = predict or PredictConfig()
    if not isinstance(model, TrainedModel):
        model = load_model(model, device=settings.device)
    job = predict_maps(
        model, image, out, settings, security=security, overwrite=overwrite, cancel=cancel
    )
    probabilities = yield from stage("predict", job)
    if probabilities is None:
        return None
    group = zarr.open_group(str(out), mode="a")
    group.attrs.update(
        {
            "model": {**model_fingerprint(model), "config": model.config.to_dict()},
            "image": image.source,
            "voxel_size_nm": list(image.voxel_size),
            "prediction": dict(probabilities.attrs["prediction"]),
        }
    )
    result = AutoLabelResult(probabilities, None, False, model)
    if ome_zarr is not None:
        maps_target = ome_zarr_targets(ome_zarr, model.config.name)[1]
        result.ome_zarr.append(
            (
                yield from stage(
                    "OME-Zarr", _write_maps(probabilities, maps_target, image, overwrite)
                )
            )
        )
    yield Progress(0, None, "labelling objects", payload={PROBABILITIES: probabilities})
    if not label:
        return result
    if not overwrite and (Path(out) / LABELS).is_dir():
        result.kept = True
        try:
            result.labels = group[LABELS]
        except Exception:  # a damaged array is still the user's: keep it, unread
            result.labels = None
        if ome_zarr is not None and result.labels is not None:  # the kept (proofread) ones
            result.ome_zarr.append(
                (
                    yield from stage(
                        "OME-Zarr", _write_labels(result.labels, ome_zarr, image, model, overwrite)
                    )
                )
            )
        return result
    result.segment = segment or SegmentConfig.tuned(model.config.decoding)
    job = postprocess(
        probabilities,
        out,
        result.segment,
        component=LABELS,
        overwrite=True,
        voxel_size=image.voxel_size,
        cancel=cancel,
    )
    labels = yield from stage("postprocess", job)
    if labels is None:
        return None
    group.attrs["postprocess"] = dict(labels.attrs["postprocess"])
    result.labels = labels
    if ome_zarr is not None:
        result.ome_zarr.append(
            (
                yield from stage(
                    "OME-Zarr", _write_labels(labels, ome_zarr, image, model, overwrite)
                )
            )
        )
    return result


def ome_zarr_targets(path: str | Path, model_name: str) -> tuple[Path, Path]:
    """Where :func:`autolabel` writes OME-Zarr labels and probabilities for ``path``.

    Returns
    -------
    labels, probabilities : Path
        Into an OME-Zarr image: ``image.ome.zarr/labels/<model>`` and
        ``image_<model>_probabilities.ome.zarr`` beside it; else ``path`` and
        ``<path>_probabilities.ome.zarr`` beside it.

    Raises
    ------
    ValueError
        When ``path`` is neither an OME-Zarr image nor named ``*.ome.zarr``.
    """
    target = Path(path)
    if is_ome_zarr(target) and not is_ome_zarr(target, labels=True):  # an image
        name = safe_file_name(model_name or "labels", default="labels")
        stem = target.name.split(".")[0]
        return target / "labels" / name, target.with_name(f"{stem}_{name}_probabilities.ome.zarr")
    if not target.name.lower().endswith(".ome.zarr"):
        raise ValueError(
            f"{target}: OME-Zarr labels go into an OME-Zarr image, or into a new store "
            f"named *.ome.zarr: name it {target.name.split('.')[0]}.ome.zarr"
        )
    stem = target.name[: -len(".ome.zarr")]
    return target, target.with_name(f"{stem}_probabilities.ome.zarr")


def _write_labels(labels, path, image: Volume, model: TrainedModel, overwrite: bool):
    """The labels as multiscale OME-Zarr: inside an OME-Zarr image, or on their own."""
    target = ome_zarr_targets(path, model.config.name)[0]
    name = target.name.split(".")[0]
    job = write_ome_zarr_job(
        labels, target, voxel_size=image.voxel_size, labels=True, name=name, overwrite=overwrite
    )
    return (yield from job)


def _write_maps(probabilities, target: Path, image: Volume, overwrite: bool):
    """The (C, Z, Y, X) maps as a multiscale OME-Zarr image with a channel axis."""
    channels = [str(c) for c in probabilities.attrs.get("channels", [])]
    if len(channels) != probabilities.shape[0]:
        channels = [f"channel {i}" for i in range(probabilities.shape[0])]
    job = write_ome_zarr_job(
        probabilities,
        target,
        voxel_size=image.voxel_size,
        channels=channels,
        name=target.name.split(".")[0],
        overwrite=overwrite,
    )
    return (yield from job)
