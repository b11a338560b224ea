"""The live loop: slices painted while training runs join it; weights come out for a preview."""

from __future__ import annotations

import json
from dataclasses import replace

import dask.array as da
import numpy as np
import pytest
import torch

from napari_anatomics.core.progress import run_job
from napari_anatomics.core.volume import Volume
from napari_anatomics.io.samples import synthetic_sbfsem
from napari_anatomics.models import build_network, plan_architecture
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import TrainedModel
from napari_anatomics.predict.preview import Previewer, view_region
from napari_anatomics.predict.tiled import predict
from napari_anatomics.segment.config import SegmentConfig
from napari_anatomics.train.holdout import holdout_tiles
from napari_anatomics.train.live import LiveSession
from napari_anatomics.train.loop import TrainConfig, train
from napari_anatomics.train.preview import LivePreview, decode_view, preview
from napari_anatomics.train.sampler import FG_CELL, CropSampler, prepare_data

#: A 3D run small enough for seconds on one CPU thread (float32: exact comparisons).
TINY = TrainConfig(
    task="instance",
    window=(4, 32, 32),
    iterations=12,
    batch=2,
    width=4,
    depth=3,
    warmup=3,
    lr=5e-3,
    save_every=100,
    seed=3,
    threads=1,
    precision="float32",
    architecture="resunet3d",
    tune_decoding=False,
    copy_paste=0.5,  # the crop counts below are those of this seed's draws at 0.5
)
#: The slices painted when the run starts, and the one painted while it runs.
START, LATE = (1, 2), 5


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_sbfsem((8, 64, 64), 10, voxel_size=(40.0, 10.0, 10.0), seed=1)


def painted_only(labels: np.ndarray, slices) -> np.ndarray:
    out = np.zeros_like(labels)
    out[list(slices)] = labels[list(slices)]
    return out


@pytest.fixture(scope="module")
def live_run(synthetic, tmp_path_factory):
    """A run that starts on slices 1 and 2; slice 5 is painted at iteration 3 and the
    preview is switched on at iteration 6."""
    image, _ = synthetic.volumes()
    labels = Volume(painted_only(synthetic.labels, START), synthetic.voxel_size, "user")
    session = LiveSession(preview=False, publish_every_s=0.0)
    out = tmp_path_factory.mktemp("live") / "model"
    events, seen = [], {}
    for event in train(image, labels, TINY, out, live=session):
        events.append(event)
        if event.note:
            seen[event.message] = (session.crops(LATE), session.weights())
            continue
        if event.step == 3:
            session.update_labels([LATE], [synthetic.labels[LATE]])
        if event.step == 6:
            assert session.weights() is None  # the preview was off
            session.enabled = True
    return session, events, seen, out


def test_a_slice_painted_during_training_joins_it(live_run):
    session, events, seen, out = live_run
    notes = [e for e in events if e.note and "joined" in e.message]
    assert [(e.step, e.message) for e in notes] == [
        (3, "slice 5 joined the training at iteration 3 (now 3 painted slices)")
    ]
    assert [(j.iteration, j.slices, j.joined, j.annotated) for j in session.joined] == [
        (3, (LATE,), (LATE,), 3)
    ]
    crops_when_joined, _ = seen[notes[0].message]
    assert crops_when_joined == 0  # not annotated before: no crop counted on it
    # The sampler drew crops holding the new slice in the 9 steps after (batch 2 each).
    assert 0 < session.crops(LATE) <= 2 * 9
    assert session.crops(START[0]) > session.crops(LATE)
    recorded = json.loads((out / "config.json").read_text())["training"]["slices_joined"]
    assert recorded == [session.joined[0].to_dict()]
    assert len([e for e in events if "loss" in e.metrics]) == TINY.iterations


def test_weights_are_published_only_while_the_preview_is_on(live_run):
    session, _, _, _ = live_run
    weights = session.weights()
    # Switched on after step 6, publishing every step (publish_every_s=0): steps 6..12.
    assert weights.iteration == TINY.iterations and weights.version == TINY.iterations - 5
    assert session.wait_for_weights(newer_than=weights.version, timeout=0.01) is None
    assert session.wait_for_weights(newer_than=0, timeout=0.01) is weights
    assert all(t.device.type == "cpu" for t in weights.state.values())
    assert weights.config.normalization["std"] > 0


def test_published_weights_are_a_moving_average_of_the_steps():
    from types import SimpleNamespace

    from napari_anatomics.train.live import LiveRun

    sampler = SimpleNamespace(data=SimpleNamespace(downsample=(1, 1, 1)), uses=np.zeros(3))
    config = SimpleNamespace()
    net = torch.nn.Linear(2, 1)
    for average, expected in ((0.5, 2 / 11), (0.0, 0.0)):
        session = LiveSession(publish_every_s=0.0, average=average)
        run = LiveRun(session, sampler, total=10)
        with torch.no_grad():
            net.weight.fill_(1.0)
            run.step(net, 1, config)  # the first step: the average is the weights
            assert session.weights().state["weight"].eq(1.0).all()
            net.weight.fill_(3.0)
            run.step(net, 2, config)  # decay min(average, 2 / 11) while warming up
        got = session.weights().state["weight"]
        want = 1.0 * expected + 3.0 * (1 - expected)
        torch.testing.assert_close(got, torch.full_like(got, want))
        assert net.weight.eq(3.0).all()  # the network itself is never touched
    with pytest.raises(ValueError, match="average"):
        LiveSession(average=1.0)


def test_publishing_waits_publish_every_s(synthetic, tmp_path):
    image, labels = synthetic.volumes()
    session = LiveSession(publish_every_s=3600.0)
    run_job(train(image, labels, replace(TINY, iterations=4), tmp_path / "m", live=session))
    weights = session.weights()
    assert (weights.version, weights.iteration) == (1, 1)


def trained_model(state, config: ModelConfig) -> TrainedModel:
    """A model built anew with these weights (not the preview's network)."""
    net = build_network(config)
    net.load_state_dict(state)
    return TrainedModel(net.eval(), config, torch.device("cpu"))


def full_prediction(model: TrainedModel, image: Volume, where) -> np.ndarray:
    maps = run_job(predict(model, image, where, tta=0, precision="float32", output="float32"))
    return np.asarray(maps)


def test_preview_of_published_weights_equals_the_prediction(live_run, synthetic, tmp_path):
    session, _, _, _ = live_run
    weights = session.weights()
    image, _ = synthetic.volumes()
    model = trained_model(weights.state, weights.config)
    expected = full_prediction(model, image, tmp_path / "p.zarr")
    previewer = Previewer(weights.config, precision="float32")
    for z in (0, LATE, 7):  # a 3D model: the slab around z, clipped to the stack
        probs, labels = preview(weights.state, weights.config, image, z=z, previewer=previewer)
        np.testing.assert_allclose(probs, expected[:, z], atol=1e-6)
        assert labels.shape == image.shape[1:]
        assert not np.any((labels > 0) & (probs[0] < SegmentConfig().foreground_threshold))
    box = (slice(1, 5), slice(8, 40), slice(0, 64))
    probs, labels = preview(weights.state, weights.config, image, box=box, previewer=previewer)
    assert probs.shape == (2, 4, 32, 64) and labels.shape == (4, 32, 64)
    np.testing.assert_allclose(probs, expected[(slice(None), *box)], atol=1e-6)
    assert labels.dtype == np.uint32


def test_live_preview_is_due_for_a_new_view_or_newer_weights_within_its_duty(
    live_run, synthetic
):
    session, _, _, _ = live_run
    image, _ = synthetic.volumes()
    weights = session.weights()
    fresh = LiveSession(publish_every_s=0.0)
    live = LivePreview(fresh, image, duty=1.0)
    assert not live.due() and live.run() is None  # no weights yet
    net = trained_model(weights.state, weights.config).net
    fresh.publish(net, 7, weights.config)
    assert not live.due()  # nothing asked to be shown yet
    live.show(z=LATE)
    assert live.due()
    shown = live.run()
    assert shown.region == (slice(LATE, LATE + 1), slice(0, 64), slice(0, 64))
    assert (shown.version, shown.iteration, shown.labels.shape) == (1, 7, (64, 64))
    _, expected = preview(weights.state, weights.config, image, z=LATE)
    np.testing.assert_array_equal(shown.labels, expected)
    assert not live.due()  # the same view, the same weights
    box = (slice(0, 8), slice(0, 32), slice(16, 48))
    live.show(box=box)
    assert live.due() and live.run().labels.shape == (8, 32, 32)
    fresh.publish(net, 8, weights.config)
    assert live.due()  # duty 1: newer weights are due at once
    # duty 0.001: newer weights wait 999 times what the last preview took
    slow = LivePreview(fresh, image, duty=0.001)
    slow.show(z=0)
    slow.run()
    fresh.publish(net, 9, weights.config)
    assert not slow.due()
    slow.show(z=1)
    assert slow.due()  # a new view never waits
    with pytest.raises(ValueError, match="duty"):
        LivePreview(fresh, image, duty=0)


def test_2d_model_preview_predicts_the_slice_alone(synthetic, tmp_path):
    image, _ = synthetic.volumes()
    arch = plan_architecture("unet2d", 2, (40.0, 10.0, 10.0), (1, 32, 32), depth=3)
    config = ModelConfig("instance", ["object"], (1, 32, 32), (40.0, 10.0, 10.0), arch,
                         ["foreground", "boundary"], normalization={"mean": 150.0, "std": 40.0})
    torch.manual_seed(0)
    state = build_network(config).state_dict()
    assert view_region(image.shape, config, z=3) == (slice(3, 4), slice(0, 64), slice(0, 64))
    expected = full_prediction(trained_model(state, config), image, tmp_path / "p.zarr")
    previewer = Previewer(config, precision="float32")
    probs, _ = preview(state, config, image, z=3, previewer=previewer)
    np.testing.assert_allclose(probs, expected[:, 3], atol=1e-6)
    # a plain numpy stack works the same (its .data is a buffer, not the array)
    probs, _ = preview(state, config, np.asarray(image.data), z=3, previewer=previewer)
    np.testing.assert_allclose(probs, expected[:, 3], atol=1e-6)


def test_view_region_checks_what_it_is_given():
    arch = plan_architecture("resunet3d", 2, (40.0, 40.0, 40.0), (4, 32, 32), depth=2)
    config = ModelConfig("instance", ["o"], (4, 32, 32), (40.0, 40.0, 40.0), arch,
                         ["foreground", "boundary"], downsample=(2, 1, 1))
    assert view_region((20, 50, 60), config, z=1)[0] == slice(0, 8)
    assert view_region((20, 50, 60), config, z=10)[0] == slice(6, 14)
    assert view_region((5, 50, 60), config, z=4)[0] == slice(0, 5)
    with pytest.raises(ValueError, match="either"):
        view_region((5, 50, 60), config)
    with pytest.raises(ValueError, match="outside"):
        view_region((5, 50, 60), config, z=5)


def test_semantic_preview_shows_the_painted_class_values():
    arch = {"name": "unet2d", "spatial_dims": 2}
    config = ModelConfig("semantic", ["a", "b"], (1, 32, 32), (1.0, 1.0, 1.0), arch,
                         ["background", "class_1", "class_2"], label_values=[3, 7])
    probs = np.zeros((3, 1, 2, 2), np.float32)
    probs[0, 0, 0, 0] = probs[1, 0, 0, 1] = probs[2, 0, 1, :] = 1.0
    assert decode_view(probs, config).tolist() == [[[0, 3], [7, 7]]]


@pytest.mark.parametrize("cache_mb", [1024.0, 0.0])
def test_painting_slices_equals_preparing_them(synthetic, cache_mb):
    image = da.from_array(synthetic.image)
    start = painted_only(synthetic.labels, START).astype(np.uint8)
    before = start.copy()
    data = prepare_data(image, da.from_array(start), (1, 2, 2), cache_mb=cache_mb)
    update = data.paint({4: synthetic.labels[4], 6: synthetic.labels[6], 1: start[1]})
    assert (update.joined, update.changed, update.left, update.annotated) == ((4, 6), (), (), 4)
    want = painted_only(synthetic.labels, (1, 2, 4, 6)).astype(np.uint8)
    want = prepare_data(image, da.from_array(want), (1, 2, 2), cache_mb=cache_mb)
    np.testing.assert_array_equal(data.annotated, want.annotated)
    np.testing.assert_array_equal(np.asarray(data.labels), np.asarray(want.labels))
    np.testing.assert_array_equal(data.fg_cells, want.fg_cells)
    np.testing.assert_array_equal(start, before)  # the caller's labels are never written
    # A correction, an erased slice, and values the labels' type cannot hold.
    fixed = synthetic.labels[4].astype(np.int32)
    fixed[fixed == fixed.max()] = 70000
    update = data.paint({4: fixed, 6: np.zeros_like(fixed)})
    assert (update.joined, update.changed, update.left, update.annotated) == ((), (4,), (6,), 3)
    assert np.asarray(data.labels).max() == 70000
    assert not np.isin(6, data.fg_cells[:, 0])
    with pytest.raises(ValueError, match="last painted slice"):
        data.paint({z: np.zeros_like(fixed) for z in (1, 2, 4)})
    with pytest.raises(ValueError, match="does not match"):
        data.paint({3: np.ones((10, 10), np.uint8)})


def test_sampler_takes_new_slices_but_never_held_out_tiles(synthetic):
    labels = painted_only(synthetic.labels, START)
    data = prepare_data(da.from_array(synthetic.image), da.from_array(labels))
    held = holdout_tiles(data.shape[1:], 16, 0.3)
    held_before = held.copy()
    rng = np.random.default_rng(0)
    sampler = CropSampler(data, (1, 32, 32), "instance", rng, holdout=held, paste=1.0,
                          fg_fraction=1.0)
    for _ in range(20):
        sampler.batch(2)
    assert sampler.uses[LATE] == 0 and sampler.uses[list(START)].sum() == 40
    update = sampler.add_slices({LATE: synthetic.labels[LATE]})
    assert update.joined == (LATE,)
    drawn = [sampler.draw()[0] for _ in range(300)]
    assert set(drawn) == {*START, LATE} and drawn.count(LATE) > 60
    for _ in range(20):
        sampler.batch(2)
    assert sampler.uses[LATE] > 0
    np.testing.assert_array_equal(sampler.holdout, held_before)
    cells = sampler.fg_cells[sampler.fg_cells[:, 0] == LATE]
    assert len(cells) and not held[cells[:, 1] * FG_CELL + FG_CELL // 2,
                                   cells[:, 2] * FG_CELL + FG_CELL // 2].any()
    # A crop on the new slice counts none of its held-out voxels.
    _, _, mask = sampler.crop((LATE, 16, 16), augment=False)
    assert not mask[:, held[16:48, 16:48]].any()


def test_session_hands_over_the_latest_copy_of_each_slice():
    session = LiveSession()
    volume = np.zeros((4, 3, 3), np.uint8)
    volume[1] = 1
    session.update(volume, [1, 2])
    volume[1] = 9  # painted on after handing over: the session holds a copy
    session.update_labels([2], [np.full((3, 3), 5)])
    assert session.pending == [1, 2]
    taken = session.take_labels()
    assert taken[1].max() == 1 and taken[2].max() == 5
    assert session.take_labels() == {} and session.pending == []
    assert session.weights() is None and session.wait_for_weights(timeout=0.01) is None
