"""Numerics that cannot fail silently: skipped steps, the switch to float32, refusals.

The failures are forced (a hook that injects NaN, a network that breaks only
under autocast), so these tests show the same thing on every CPU, whether or
not it has bfloat16 hardware: bfloat16 autocast runs (slowly) on any CPU.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_anatomics.cli import main
from napari_anatomics.core.numerics import compare_precision, guarded_step, non_finite_tensors
from napari_anatomics.core.progress import run_job
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.models.store import WEIGHTS_NAME, load_model, save_model
from napari_anatomics.train import loop as training
from napari_anatomics.train.loop import NonFiniteTraining, train
from napari_anatomics.train.recipe import TrainConfig

TINY = TrainConfig(
    task="instance",
    architecture="resunet3d",
    window=(4, 32, 32),
    iterations=12,
    batch=2,
    width=4,
    depth=3,
    warmup=3,
    save_every=100,
    threads=1,
    tune_decoding=False,
)


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_sbfsem((8, 64, 64), 10, voxel_size=(40.0, 10.0, 10.0), seed=1).volumes()


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 1, 1)
    )


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_a_nan_loss_never_reaches_the_weights():
    net = _net()
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    before = _state(net)
    x = torch.randn(2, 1, 8, 8)
    loss, applied = guarded_step(net, opt, scaler, lambda: net(x).mean() * float("nan"))
    assert not applied and np.isnan(loss)
    # Weights and the batch-norm statistics the forward pass updated are as before.
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    loss, applied = guarded_step(net, opt, scaler, lambda: net(x).pow(2).mean())
    assert applied and np.isfinite(loss)
    assert not torch.equal(net[0].weight, before["0.weight"])


def test_a_nan_gradient_never_reaches_the_weights():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    before = _state(net)
    hook = net[0].weight.register_hook(lambda g: g * float("nan"))
    loss, applied = guarded_step(net, opt, scaler, lambda: net(torch.randn(2, 1, 8, 8)).mean())
    hook.remove()
    assert np.isfinite(loss) and not applied
    assert not non_finite_tensors(net.state_dict())
    torch.testing.assert_close(net[2].weight, before["2.weight"], rtol=0, atol=0)


class BreaksUnderAutocast(torch.nn.Module):
    """Identity in float32; NaN while CPU autocast is on (after ``after`` calls)."""

    def __init__(self, after: int = 0) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            self.calls += 1
            if self.calls > self.after:
                return x * float("nan")
        return x


def test_compare_precision_fails_a_broken_mixed_path_and_restores_the_net():
    net = torch.nn.Sequential(_net(), BreaksUnderAutocast())
    before = _state(net)
    x = torch.randn(2, 1, 8, 8)
    check = compare_precision(net, lambda: net(x).pow(2).mean(), torch.device("cpu"),
                              torch.bfloat16)
    assert not check.ok and "not finite" in check.reason
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    good = torch.nn.Sequential(_net())
    check = compare_precision(good, lambda: good(x).pow(2).mean(), torch.device("cpu"),
                              torch.bfloat16)
    # bfloat16 keeps ~3 significant digits: the same batch agrees within the 5 % bound.
    assert check.ok, check.reason
    assert check.cosine > 0.9


def _mixed_with_breakage(monkeypatch, after: int):
    """Force the bfloat16 path on any CPU, with a network that breaks under it."""
    monkeypatch.setattr(training, "autocast_dtype", lambda device, precision: torch.bfloat16)
    original = training.build_network

    def build(mconfig):
        return torch.nn.Sequential(original(mconfig), BreaksUnderAutocast(after))

    monkeypatch.setattr(training, "build_network", build)
    monkeypatch.setattr(training, "CHECK_BATCHES", 1)


def test_mixed_precision_that_fails_its_first_check_trains_in_float32(
    synthetic, tmp_path, monkeypatch
):
    _mixed_with_breakage(monkeypatch, after=0)
    events = []
    folder = run_job(train(*synthetic, TINY, tmp_path / "m"), events.append)
    notes = [e.message for e in events if e.note]
    assert notes[0].startswith("recipe: instance, resunet3d on cpu, 1 thread, ")
    assert "bfloat16 failed its check" in notes[1] and "float32" in notes[1]
    rows = list(csv.DictReader((folder / "history.csv").open()))
    assert {r["precision"] for r in rows} == {"float32"}
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    config = json.loads((folder / "config.json").read_text())
    assert config["training"]["precision_used"] == "float32"


def test_a_run_that_goes_non_finite_switches_to_float32(synthetic, tmp_path, monkeypatch):
    # Finite for the first check (2 forward passes under autocast) and 3 steps, then NaN.
    _mixed_with_breakage(monkeypatch, after=4)
    events = []
    folder = run_job(train(*synthetic, TINY, tmp_path / "m"), events.append)
    switch = [e for e in events if e.note and "switched to float32" in e.message]
    assert len(switch) == 1
    rows = list(csv.DictReader((folder / "history.csv").open()))
    precisions = [r["precision"] for r in rows]
    first = precisions.index("float32")
    assert set(precisions[:first]) == {"bfloat16"} and set(precisions[first:]) == {"float32"}
    assert 1 <= int(float(rows[-1]["skipped"])) <= 3
    events_logged = json.loads((folder / "config.json").read_text())["training"]
    assert [e["precision"] for e in events_logged["precision_events"]] == [
        "bfloat16",
        "float32",
    ]
    assert events_logged["precision_used"] == "float32"
    assert not non_finite_tensors(torch.load(folder / WEIGHTS_NAME, weights_only=True))


def test_non_finite_float32_stops_with_a_clear_line_and_keeps_a_finite_model(
    synthetic, tmp_path, monkeypatch
):
    original = training.build_network

    def build(mconfig):
        net = original(mconfig)
        for p in net.parameters():
            p.register_hook(lambda g: g * float("nan"))
        return net

    monkeypatch.setattr(training, "build_network", build)
    cfg = replace(TINY, precision="float32", iterations=20)
    message = r"steps in a row gave NaN or inf in float32.*--lr"
    with pytest.raises(NonFiniteTraining, match=message):
        run_job(train(*synthetic, cfg, tmp_path / "m"))
    model = load_model(tmp_path / "m", device="cpu")  # saved, and finite
    assert not non_finite_tensors(model.net.state_dict())


def test_non_finite_weights_are_never_saved_and_never_predict(synthetic, tmp_path, capsys):
    folder = run_job(train(*synthetic, replace(TINY, iterations=2), tmp_path / "m"))
    model = load_model(folder, device="cpu")
    with torch.no_grad():
        next(model.net.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="refusing to save"):
        save_model(folder, model.net, model.config)
    assert load_model(folder, device="cpu") is not None  # the saved model is untouched
    # A weights file broken some other way is refused by predict, in one line.
    state = torch.load(folder / WEIGHTS_NAME, weights_only=True)
    next(iter(state.values())).view(-1)[0] = float("inf")
    torch.save(state, folder / WEIGHTS_NAME)
    image = tmp_path / "img.tif"
    import tifffile

    tifffile.imwrite(image, np.asarray(synthetic[0].data))
    code = main(["predict", str(folder), str(image), "--out", str(tmp_path / "p.zarr")])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and "NaN or inf" in err[0] and "train it again" in err[0]
    assert not (tmp_path / "p.zarr").exists()
