"""Networks and model folders: build, save, load safely, list."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_anatomics.models import build_network, network_factor, plan_architecture, run_network
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import list_models, load_checkpoint, load_model, save_model
from napari_anatomics.models.unet3d import plan_levels


def tiny_config(name="resunet3d", window=(4, 32, 32), voxel=(40.0, 10.0, 10.0), **kw):
    arch = plan_architecture(name, 2, voxel, window, width=4, depth=3, **kw)
    return ModelConfig(
        task="instance",
        classes=["object"],
        window=window,
        voxel_size=voxel,
        architecture=arch,
        targets=["foreground", "boundary"],
        normalization={"mean": 100.0, "std": 20.0},
    )


def test_voxel_size_decides_kernels_and_pooling():
    kernels, strides = plan_levels((40, 10, 10), 4)
    # z is 4x coarser: in-plane levels until the spacing is isotropic, then 3D.
    assert kernels == [(1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3)]
    assert strides == [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    kernels, strides = plan_levels((40, 40, 40), 3)
    assert kernels == [(3, 3, 3)] * 3 and strides == [(2, 2, 2)] * 2
    # A shallow window is not pooled in z below 2 slices.
    _, strides = plan_levels((40, 40, 40), 4, window_z=4)
    assert strides == [(2, 2, 2), (1, 2, 2), (1, 2, 2)]
    with pytest.raises(ValueError, match="depth"):
        plan_levels((1, 1, 1), 0)


@pytest.mark.parametrize("name", ["resunet3d", "unet2d"])
def test_build_network_shapes(name):
    window = (4, 32, 32) if name == "resunet3d" else (1, 32, 32)
    config = tiny_config(name, window)
    net = build_network(config).eval()
    factor = network_factor(config.architecture)
    assert all(w % f == 0 for w, f in zip(window, factor))
    x = torch.randn(2, 1, *window)
    with torch.no_grad():
        out = net(x) if name == "resunet3d" else net(x[:, :, 0])
    assert out.shape[1] == 2 and out.shape[-2:] == (32, 32)


def test_2d_net_runs_channels_last_slice_by_slice():
    config = tiny_config("unet2d", (1, 32, 32))
    torch.manual_seed(0)
    net = build_network(config).eval()
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 3, 32, 32)  # 2 items of 3 slices
    with torch.no_grad():
        out = run_network(net, x, 2)
        contiguous = build_network(config).eval()
        contiguous.load_state_dict(net.state_dict())
        contiguous = contiguous.to(memory_format=torch.contiguous_format)
        # Slice 1 of item 1, on its own, through a contiguous copy of the net.
        alone = contiguous(x[1:2, :, 1].contiguous())
    assert out.shape == (2, 2, 3, 32, 32)
    # float32 logits through other kernels (channels-last vs contiguous, a batch of 6
    # slices vs 1): each convolution may sum in another order, a few ulps of its
    # output, compounded over the net's layers; 1e-4 on logits of order 1 leaves margin.
    np.testing.assert_allclose(out[1:2, :, 1].numpy(), alone.numpy(), rtol=0, atol=1e-4)


def test_unknown_architecture_is_refused():
    with pytest.raises(ValueError, match="architecture"):
        plan_architecture("vnet", 2, (1, 1, 1), (4, 32, 32))


def test_save_load_roundtrip_and_registry(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    net = build_network(config).eval()
    save_model(tmp_path / "m1", net, config, [{"iteration": 1, "loss": 0.5}])
    model = load_model(tmp_path / "m1", device="cpu")
    x = torch.randn(2, 1, 4, 32, 32)
    with torch.no_grad():
        expect = torch.sigmoid(net(x))
    # the weights load bit for bit; 1e-6 (16 ulps of a probability <= 1) only allows
    # for the loaded copy running other float32 kernels
    np.testing.assert_allclose(model(x).numpy(), expect.numpy(), rtol=0, atol=1e-6)
    assert (tmp_path / "m1" / "history.csv").read_text().startswith("iteration,loss")
    assert model.config.normalization == {"mean": 100.0, "std": 20.0}
    infos = list_models(tmp_path)
    assert [i.name for i in infos] == ["m1"]
    assert infos[0].task == "instance" and infos[0].classes == ["object"]
    assert list_models(tmp_path / "m1")[0].path == tmp_path / "m1"


class Payload:
    """Stands in for an object that would run code when unpickled."""


def test_pickled_object_in_weights_is_refused(tmp_path):
    config = tiny_config()
    net = build_network(config)
    save_model(tmp_path, net, config)
    state = net.state_dict()
    state["extra"] = Payload()
    torch.save(state, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="can run any code") as err:
        load_model(tmp_path, device="cpu")
    message = str(err.value)
    assert "was refused: it carries a reference to the Python object" in message
    assert "Payload" in message
    # why it is refused, never PyTorch's hint on how to load it anyway
    assert "weights_only" not in message and "likely succeed" not in message
    # Training checkpoints (resume) are read the same way.
    torch.save({"model": net.state_dict(), "hook": Payload()}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="can run any code"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_damaged_weights_are_reported_as_damaged(tmp_path):
    save_model(tmp_path, build_network(tiny_config()), tiny_config())
    weights = (tmp_path / "weights.pt").read_bytes()
    (tmp_path / "weights.pt").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match=r"weights\.pt: is damaged or incomplete"):
        load_model(tmp_path, device="cpu")
    (tmp_path / "weights.pt").write_text("not weights")  # not a zip: read as a bare pickle
    with pytest.raises(ValueError, match=r"weights\.pt was refused: it is not a plain weight"):
        load_model(tmp_path, device="cpu")


def test_weights_that_do_not_fit_the_config(tmp_path):
    save_model(tmp_path, build_network(tiny_config()), tiny_config())
    wider = tiny_config()
    wider.architecture["width"] = 8
    wider.save(tmp_path)
    with pytest.raises(ValueError, match="does not fit"):
        load_model(tmp_path, device="cpu")


class _FlipLast(torch.nn.Module):
    """Flips the last axis: which of our axes that is depends on the package's order."""

    def forward(self, x):
        return torch.flip(x, (-1,))


def _traced_flip(path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(_FlipLast(), torch.rand(2, 1, 4, 6)).save(str(path))
    return path


def _zoo_config(window=(1, 4, 6)):
    arch = {"name": "torchscript", "spatial_dims": 2, "in_channels": 1, "out_channels": 2,
            "input_axes": ["batch", "channel", "x", "y"],  # x before y: the flip is along y
            "output_axes": ["batch", "channel", "x", "y"], "activation": None,
            "channels": [[0], 0]}
    return ModelConfig(task="semantic", classes=["thing"], window=window,
                       voxel_size=(40.0, 4.0, 4.0), architecture=arch,
                       targets=["background", "thing"], label_values=[1],
                       normalization={"mode": "percentile", "min": 1.0, "max": 99.0})


def test_imported_torchscript_folder_loads_lists_and_maps_axes(tmp_path):
    from napari_anatomics.models.store import save_torchscript

    archive = _traced_flip(tmp_path / "flip.pt").read_bytes()
    folder = save_torchscript(tmp_path / "zoo", archive, _zoo_config())
    assert (folder / "weights.pt").read_bytes() == archive  # the package's archive, as is
    assert [m.name for m in list_models(tmp_path)] == ["zoo"]
    model = load_model(folder, "cpu")
    batch = torch.rand(3, 1, 2, 4, 6)  # (B, 1, Z, Y, X): a 2D net runs slice by slice
    probs = model(batch)
    flipped_y = torch.flip(batch[:, 0], (-2,))
    torch.testing.assert_close(probs[:, 1], flipped_y)  # its output, in our axes
    torch.testing.assert_close(probs[:, 0], 1 - flipped_y)  # background added: 1 - max
    with pytest.raises(ValueError, match="cannot be built or trained anew"):
        build_network(model.config)
    (folder / "weights.pt").write_bytes(archive[: len(archive) // 2])
    with pytest.raises(ValueError, match="not a TorchScript archive or is damaged"):
        load_model(folder, "cpu")


def test_per_stack_normalization_is_computed_once_from_a_small_sample():
    import dask.array as da

    from napari_anatomics.models.config import (
        SAMPLE_SLICES,
        SAMPLE_VOXELS,
        normalize,
        resolve_normalization,
        stack_sample,
    )

    rng = np.random.default_rng(0)
    small = rng.integers(0, 200, (6, 50, 40)).astype(np.uint8)
    norm = {"mode": "percentile", "min": 2.0, "max": 98.0, "eps": 0.0, "gain": 2.0,
            "offset": -1.0, "clip": [None, 1.5]}
    resolved = resolve_normalization(norm, small)
    lo, hi = np.percentile(small, [2, 98])
    expected = np.clip(2 * (small - lo) / (hi - lo) - 1, None, 1.5)
    np.testing.assert_allclose(normalize(small, resolved), expected, atol=1e-5)
    meanstd = resolve_normalization({"mode": "meanstd", "eps": 0.0}, small)
    assert meanstd == pytest.approx({"mean": small.mean(), "std": small.std()})
    with pytest.raises(ValueError, match="resolve it first"):
        normalize(small, norm)
    fixed = {"mean": 3.0, "std": 2.0}
    assert resolve_normalization(fixed, small) == fixed  # our models: unchanged
    big = da.ones((400, 4096, 4096), dtype=np.uint8, chunks=(1, 1024, 1024))  # 6.7 GB, lazy
    sample = stack_sample(big)
    assert sample.shape[0] == SAMPLE_SLICES and sample.size <= SAMPLE_VOXELS
