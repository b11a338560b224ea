"""Tiled prediction: exact blending, stride checks, TTA, resume, cancel, cluster."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from napari_anatomics.core.progress import CancelToken, run_job
from napari_anatomics.core.volume import Volume
from napari_anatomics.io.probabilities import decode
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import TrainedModel
from napari_anatomics.predict.config import PredictConfig
from napari_anatomics.predict.region import RegionPredictor
from napari_anatomics.predict.tiled import predict
from napari_anatomics.predict.tiling import TilePlan, check_stride
from precision_paths import no_mixed_precision_reason

NORM = {"mean": 120.0, "std": 60.0}

#: Tolerance for float32 probabilities of :func:`conv_model` computed in another
#: grouping: other tiles, regions, batches, TTA flips, processes or thread counts.
#: oneDNN picks kernels and summation orders per shape and CPU, so bit equality
#: is not promised (an AMD EPYC differed in 801 of 120,000 values, by 1.8e-7 =
#: 3 ulps of 0.5). Bound: a logit sums 27 products with sum |w| = 1 of inputs
#: |x| <= 2.25 (plus the bias), so reordering moves it by < 27 * 2**-24 * 2.35 =
#: 3.8e-6; the sigmoid (slope <= 1/4) makes that < 1e-6 and blending or
#: upsampling only averages such values: 2e-6 absolute holds on any CPU.
F32_REGROUPED = {"rtol": 0.0, "atol": 2e-6}


def conv_model(window=(8, 16, 16), downsample=(1, 1, 1), symmetric=False, seed=0, device="cpu"):
    """A fixed 3x3x3 convolution (translation-equivariant), sigmoid outputs."""
    generator = torch.Generator().manual_seed(seed)
    net = torch.nn.Conv3d(1, 2, 3, padding=1)
    with torch.no_grad():
        w = torch.randn(net.weight.shape, generator=generator)
        if symmetric:  # invariant under flips of z, y, x and the y/x swap
            for dims in ((2,), (3,), (4,)):
                w = w + w.flip(dims)
            w = w + w.transpose(3, 4)
        net.weight.copy_(w / w.abs().sum(dim=(2, 3, 4), keepdim=True))
        net.bias.fill_(0.1)
    config = ModelConfig(
        task="instance",
        classes=["organelle"],
        window=window,
        voxel_size=(40, 10, 10),
        architecture={"name": "toy", "spatial_dims": 3},
        targets=["foreground", "boundary"],
        normalization=NORM,
        downsample=downsample,
    )
    return TrainedModel(net.to(device).eval(), config, torch.device(device))


def whole_volume(model, image):
    x = torch.from_numpy((image.astype(np.float32) - NORM["mean"]) / NORM["std"])
    return model(x[None, None])[0].cpu().numpy()


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 256, (20, 50, 60)).astype(np.uint8)


def run(model, image, out, **kwargs):
    kwargs.setdefault("chunks", (8, 16, 16))
    kwargs.setdefault("threads", 1)
    kwargs.setdefault("precision", "float32")  # float32 throughout, to compare with `ref`
    events = []
    result = run_job(predict(model, Volume(image), out, **kwargs), events.append)
    return result, [e.payload for e in events if e.payload is not None]


def test_blending_reproduces_whole_volume_inference(image, tmp_path):
    model = conv_model()
    result, regions = run(model, image, tmp_path / "p.zarr", output="float32", memory_mb=1)
    assert len(regions) > 4  # processed region by region, each reported
    assert result.shape == (2, *image.shape)
    assert result.chunks == (2, 8, 16, 16)
    # Everywhere, faces included: tiles end flush with the stack (no mirrored input),
    # so the stack's faces see the same zero padding as a single whole-volume pass.
    ref = whole_volume(model, image)
    np.testing.assert_allclose(result[:], ref, **F32_REGROUPED)
    # uint8 storage: the same maps rounded to 1/255
    quantized, _ = run(model, image, tmp_path / "q.zarr")
    assert quantized.dtype == np.uint8
    # half a step of rounding, plus F32_REGROUPED for the maps themselves
    assert np.abs(decode(quantized[:]) - ref).max() <= 0.5 / 255 + F32_REGROUPED["atol"]
    assert quantized.attrs["encoding"] == "probability = value / 255"
    attrs = dict(result.attrs)
    assert attrs["channels"] == ["foreground", "boundary"]
    assert attrs["voxel_size_nm"] == list(Volume(image).voxel_size)
    assert "done_regions" not in attrs


def test_regions_do_not_change_the_result_with_downsampling(image, tmp_path):
    model = conv_model(downsample=(1, 2, 2))
    small, regions = run(model, image, tmp_path / "a.zarr", output="float32", memory_mb=1)
    whole, one = run(model, image, tmp_path / "b.zarr", output="float32", memory_mb=512)
    assert len(regions) > 1 and len(one) == 1
    # the same maps, up to the float32 regrouping of the tiles into other regions
    np.testing.assert_allclose(small[:], whole[:], **F32_REGROUPED)
    # full resolution out; a constant image gives the constant whole-volume answer
    # (away from the faces, where the network sees its zero padding)
    flat = np.full(image.shape, 77, np.uint8)
    const, _ = run(model, flat, tmp_path / "c.zarr", output="float32")
    inner = (slice(None), slice(1, -1), slice(3, -3), slice(3, -3))
    np.testing.assert_allclose(
        const[:][inner],
        whole_volume(model, flat)[:, 5:6, 5:6, 5:6] * np.ones_like(const[:][inner]),
        **F32_REGROUPED,  # the block mean of a constant is exact, the rest is regrouping
    )


def test_stride_and_window_validation(image, tmp_path):
    with pytest.raises(ValueError, match="gaps"):
        check_stride((9, 8, 8), (8, 16, 16))
    with pytest.raises(ValueError, match="positive"):
        check_stride((0, 8, 8), (8, 16, 16))
    with pytest.raises(ValueError, match="larger than the model window"):
        run_job(predict(conv_model(), Volume(image), tmp_path / "x.zarr", stride=(8, 17, 8)))
    # stride == window is allowed (no overlap, no border), default overlaps by 25 %
    plan = TilePlan.create(image.shape, (8, 16, 16), stride=(8, 16, 16))
    assert plan.border == (0, 0, 0)
    assert TilePlan.create(image.shape, (8, 16, 16)).stride == (6, 12, 12)
    model = conv_model()
    result, _ = run(model, image, tmp_path / "s.zarr", output="float32", stride=(8, 16, 16))
    assert result.shape == (2, *image.shape)
    # a stack smaller than the window is padded by reflection, not refused
    tiny = image[:3, :5, :7]
    small, _ = run(model, tiny, tmp_path / "t.zarr", output="float32")
    assert small.shape == (2, 3, 5, 7)
    np.testing.assert_allclose(
        small[:][:, 1:2, 1:4, 1:6], whole_volume(model, tiny)[:, 1:2, 1:4, 1:6], **F32_REGROUPED
    )
    with pytest.raises(ValueError, match="3D"):
        run_job(predict(model, Volume(image[0]), tmp_path / "u.zarr"))


@pytest.mark.parametrize("tta,mode", [(4, "mean"), (8, "max")])
def test_tta_with_symmetric_model_equals_plain(image, tmp_path, tta, mode):
    model = conv_model(symmetric=True)
    plain, _ = run(model, image, tmp_path / "a.zarr", output="float32")
    aug, _ = run(
        model, image, tmp_path / "b.zarr", output="float32", tta=tta, tta_mode=mode, batch=3
    )
    # the kernel is exactly symmetric, so only the summation order of the flipped
    # tiles differs; the mean or max of values within F32_REGROUPED stays within it
    np.testing.assert_allclose(aug[:], plain[:], **F32_REGROUPED)
    # an asymmetric model does change under TTA
    skew = conv_model(seed=3)
    a, _ = run(skew, image, tmp_path / "c.zarr", output="float32")
    b, _ = run(skew, image, tmp_path / "d.zarr", output="float32", tta=tta, tta_mode=mode)
    assert np.abs(a[:] - b[:]).max() > 1e-3  # 500x F32_REGROUPED: a real change
    with pytest.raises(ValueError, match="tta"):
        run(model, image, tmp_path / "e.zarr", tta=3)


def test_settings_are_one_config_and_tta_defaults_to_the_models(image, tmp_path):
    model = conv_model(seed=3)
    model.config.decoding = {"tta": 4, "min_size": 10}
    settings = PredictConfig(output="float32", chunks=(8, 16, 16), threads=1,
                             precision="float32")  # fmt: skip
    chosen = run_job(predict(model, Volume(image), tmp_path / "m.zarr", settings))
    assert chosen.attrs["prediction"]["tta"] == 4
    # a keyword replaces the config's setting; the maps are those of an explicit tta=4
    explicit, _ = run(model, image, tmp_path / "e.zarr", output="float32", tta=4)
    np.testing.assert_allclose(chosen[:], explicit[:], **F32_REGROUPED)
    plain = run_job(predict(model, Volume(image), tmp_path / "p.zarr", settings, tta=0))
    assert plain.attrs["prediction"]["tta"] == 0
    with pytest.raises(ValueError, match="batch must be at least 1"):
        run_job(predict(model, Volume(image), tmp_path / "b.zarr", settings, batch=0))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_mixed_precision_stays_close_and_is_recorded(image, tmp_path, device):
    reason = no_mixed_precision_reason(device)
    if reason:
        pytest.skip(reason)
    ref = whole_volume(conv_model(), image)  # float32 on the CPU
    model = conv_model(device=device)
    mixed, _ = run(model, image, tmp_path / "m.zarr", output="float32", precision="mixed")
    assert mixed.attrs["prediction"]["precision"] == "mixed"
    # bfloat16 (CPU, or CUDA GPUs that have it) keeps 8 significant bits, float16 11:
    # inputs and weights rounded to 2**-9 relative and a float32 accumulation move a
    # logit (sum |w x| <= 2.25) by <= 2**-8 * 2.25, its bfloat16 output by 2**-9 * 2.35
    # more, 0.013 in all, so a probability (slope <= 1/4) by <= 0.0034. 0.02 leaves 6x;
    # a difference > 0 shows the run really was not float32.
    assert 0 < np.abs(mixed[:] - ref).max() < 0.02
    exact, _ = run(model, image, tmp_path / "e.zarr", output="float32")
    assert exact.attrs["prediction"]["precision"] == "float32"
    with pytest.raises(ValueError, match="precision"):
        run(model, image, tmp_path / "x.zarr", precision="half")


def test_resume_after_interruption(image, tmp_path):
    model = conv_model()
    out = tmp_path / "r.zarr"
    settings = {"output": "float32", "memory_mb": 1}
    job = predict(
        model, Volume(image), out, chunks=(8, 16, 16), threads=1, precision="float32", **settings
    )
    written = 0
    for event in job:
        written += event.payload is not None
        if written == 3:
            break
    job.close()  # killed mid-way
    group = zarr.open_group(str(out))
    assert "probabilities" not in group
    assert len(group[".probabilities.partial"].attrs["done_regions"]) == 3
    resumed, regions = run(model, image, out, **settings)
    fresh, all_regions = run(model, image, tmp_path / "f.zarr", **settings)
    assert len(regions) == len(all_regions) - 3  # done regions are skipped
    # the resumed run predicts the tiles the done regions had cached in other batches
    np.testing.assert_allclose(resumed[:], fresh[:], **F32_REGROUPED)
    assert ".probabilities.partial" not in zarr.open_group(str(out))
    # finished: a rerun with the same settings does nothing (the stored maps, bit for
    # bit), other settings are refused
    kept = resumed[:]
    again, none = run(model, image, out, **settings)
    assert none == [] and np.array_equal(again[:], kept)
    with pytest.raises(FileExistsError, match="overwrite"):
        run(model, image, out, tta=4, **settings)
    replaced, _ = run(model, image, out, tta=4, overwrite=True, **settings)
    assert replaced.attrs["prediction"]["tta"] == 4


def test_cancel_returns_none_and_resumes(image, tmp_path):
    token = CancelToken()
    job = predict(
        conv_model(),
        Volume(image),
        tmp_path / "c.zarr",
        chunks=(8, 16, 16),
        memory_mb=1,
        threads=1,
        cancel=token,
    )
    token.cancel()
    assert run_job(job) is None
    done = zarr.open_group(str(tmp_path / "c.zarr"))[".probabilities.partial"].attrs
    assert done["done_regions"] == []


@pytest.mark.slow
def test_local_cluster_matches_single_process(image, tmp_path):
    model = conv_model(downsample=(1, 2, 2))
    single, _ = run(model, image, tmp_path / "s.zarr", output="float32", memory_mb=1, batch=2)
    cluster, regions = run(
        model, image, tmp_path / "d.zarr", output="float32", memory_mb=1, batch=2, workers=2
    )
    assert len(regions) > 1
    # workers predict each region's tiles in their own batches (no shared tile cache)
    np.testing.assert_allclose(cluster[:], single[:], **F32_REGROUPED)


class Counting(torch.nn.Module):
    """Wraps a network and counts the tiles it sees."""

    def __init__(self, net):
        super().__init__()
        self.net, self.tiles = net, 0

    def forward(self, x):
        self.tiles += x.shape[0]
        return self.net(x)


@pytest.mark.parametrize("cache_mb,once", [(64.0, True), (0.0, False)])
def test_tiles_shared_by_regions_are_predicted_once(image, cache_mb, once):
    model = conv_model()
    model.net = Counting(model.net)
    plan = TilePlan.create(image.shape, model.config.window, chunks=(8, 16, 16), memory_mb=1)
    predictor = RegionPredictor(model, plan, batch=2, cache_mb=cache_mb, precision="float32")
    result = np.zeros((2, *image.shape), np.float32)
    for index, region in enumerate(plan.regions):
        result[(slice(None), *region)] = run_job(predictor.region(image, region, index))
    assert len(plan.regions) > 4
    assert (model.net.tiles == plan.n_tiles) is once
    assert model.net.tiles >= plan.n_tiles
    inner = (slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose(result[inner], whole_volume(model, image)[inner], **F32_REGROUPED)
    if once:
        assert not predictor._cache  # emptied once the last region needing them is done
