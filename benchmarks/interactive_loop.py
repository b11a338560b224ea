"""The interactive loop: a scripted user paints while one run trains, against new runs.

A scripted user works on the SBFSEM chloroplasts (../shared/data/sbfsem-chloroplasts,
10 x 10 x 40 nm): the training data is the stack's y < 700 part, the score is AP@0.5 (and
foreground Dice) on the test strip y >= 780, never painted (its connected objects are the
true instances, as in ``train_defaults.py``). The user's labels start with 2 slices painted
with the truth (z = 2 and 7, new ids in each slice, as a user paints them). Each round is
``--round-s`` seconds of training; then every arm predicts the whole stack, is scored, and
its user corrects the worst-predicted object of the training part (see below). Three arms,
each with its own labels:

* ``live``: ONE ``train(..., live=session)`` run, advanced by hand (``next()``) for
  ``--round-s`` seconds of wall time per round, start-up included; paused (not advanced)
  while it is scored and corrected; corrections join it through ``session.update``. While
  it trains, a thread plays the viewer's preview (a ``LivePreview`` of the slice the user
  last corrected, polled every 0.2 s, as the Train panel does). At the end of a round the
  session is switched off and on, and the run advanced until it publishes fresh weights.
* ``scratch``: each round a new run from scratch on the arm's labels.
* ``finetune``: round 1 from scratch, later rounds a new run with ``init_from`` the
  previous round's model.

Run::

    python benchmarks/interactive_loop.py --seed 0                 # 8 rounds of 60 s (~1 h)
    python benchmarks/interactive_loop.py --rounds 2 --round-s 15 --crop-x 800   # smoke test
    python benchmarks/interactive_loop.py --preview-cost --round-s 60 --rounds 4

``--preview-cost`` makes two live runs of ``--round-s`` x ``--rounds`` seconds on the same
labels, no user: one with the preview thread (the user moves to another slice every 10 s),
one with ``LiveSession(preview=False)`` and no thread, and reports the steps lost (issue 15:
at most ~10 %). Both modes start with an untimed warm-up (one live step and one preview:
imports and other one-time costs, paid by no arm). Every run appends JSON lines to
``--results``; the rounds mode prints a table and plots AP@0.5 per round to ``--plot``.

Fairness choices
----------------
* Every arm: the TrainConfig defaults (task "instance", voxel size from the Volume),
  ``--seed``, the same threads (the Train panel's ``cpu_threads(leave_free=VIEWER_CORES)``
  unless ``--threads``); interleaved round by round so that load hits all alike.
* Equal wall time: every arm gets ``--round-s`` seconds inside ``next()`` per round, its
  start-up included (data, network, the mixed-precision check). The new runs also get
  ``time_limit = round_s / 60``, so their learning rate decays over the round as a timed
  run's would; that clock starts after the start-up, so the wall budget ends them first
  (closing the job saves the model; no decoding is tuned). The live run keeps the panel's
  schedule (``--live-iterations``, default the recipe's, no time limit; an error if it
  would end during the rounds); the step(s) it takes to publish fresh weights count.
* One decoding for every arm: ``PRESETS["split touching objects"]`` via ``decode_view``, on
  the whole stack predicted once per round and arm (``Previewer.probabilities`` on the CPU,
  all cores, training paused), so arms differ only by their weights.
* The scripted user, the same for every arm, on that arm's own prediction: on a training
  slice it sees its labels where the slice is painted, else the prediction. Candidates are
  the truth's 2D objects of each slice (connected pieces, specks under 200 px ignored) and
  the seen objects that touch no truth object (false positives, also from 200 px); the
  worst is the one with the lowest best IoU to the other side (ties: the larger). If its
  slice is not painted, the user first accepts the slice's prediction (``accept``), then
  erases the slice's objects that overlap it and, for a truth object, paints it with a new
  id. Nothing is corrected after the last round. Limitation: a slice erased to all zeros
  is unpainted again (the library's rule), which needs a slice with no truth object.

Results
-------
2026-12-01, seed 0, 2 cores (AMD EPYC, no AMX), the panel's 1 training thread, 8 rounds of
60 s; development tests ran beside rounds 1-3 (interleaving spreads that over the arms).
AP@0.5 on the test strip (29 objects) after each round; steps per round: live 62-77, new
runs 60-71 (their start-up comes out of the same 60 s):

=====  =====  =======  ========
round  live   scratch  finetune
=====  =====  =======  ========
1      0.035  0.105    0.100
2      0.267  0.140    0.061
3      0.229  0.182    0.191
4      0.282  0.279    0.263
5      0.302  0.233    0.342
6      0.385  0.167    0.350
7      0.244  0.186    0.262
8      0.318  0.265    0.368
=====  =====  =======  ========

AP@0.5 >= 0.25 first in round 2 (live), 4 (scratch), 4 (finetune); >= 0.346 (90 % of the
best) in round 6 (live and finetune), never (scratch). Mean of rounds 2-8: live 0.290,
finetune 0.262, scratch 0.207. 29 previews in the live arm's 8 minutes took 58 s of the
second core. One seed, one correction per round: differences of 0.05 are within the
round-to-round noise.

An earlier run (same settings, stopped after 5 rounds) published the raw weights of the
live run instead of their moving average: live 0.080, 0.032, 0.133, 0.031, 0.135; scratch
0.128, 0.235, 0.101, 0.102, 0.118; finetune 0.128, 0.133, 0.220, 0.195, 0.204. A run in the
middle of its schedule moves with a high learning rate; since then the session publishes
the average of the last ~20 steps (``LiveSession.average``).

``--preview-cost --rounds 2`` (120 s each, same day): preview on 140 steps (12 previews of
a 1170 x 3293 slice, 20.2 s), off 144 steps: 2.8 % of the steps lost (target <= 10 %).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cc3d
import numpy as np
import tifffile
import torch

from napari_anatomics.analyze.accept import accept
from napari_anatomics.analyze.evaluate import evaluate
from napari_anatomics.core.runtime import VIEWER_CORES, cpu_threads, usable_cores
from napari_anatomics.core.volume import Volume
from napari_anatomics.models.config import ModelConfig
from napari_anatomics.models.store import load_model
from napari_anatomics.predict.preview import Previewer
from napari_anatomics.segment.config import PRESETS
from napari_anatomics.train.live import LiveSession, LiveWeights
from napari_anatomics.train.loop import train
from napari_anatomics.train.preview import LivePreview, decode_view
from napari_anatomics.train.recipe import TrainConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sbfsem-chloroplasts"
VOXEL = (40.0, 10.0, 10.0)  # z, y, x nm
TRAIN_Y, TEST_Y = 700, 780
START = (2, 7)  # the slices painted at the start
SPECK = 200  # px: smaller 2D objects are not worth a user's correction
TICK_S, SCROLL_S = 0.2, 10.0  # the viewer's poll; the user's scrolling (preview cost)
DECODING = PRESETS["split touching objects"]
ARMS = ("live", "scratch", "finetune")


def _volume(data: np.ndarray) -> Volume:
    return Volume(data.copy(), VOXEL, "user")


def _play(view: LivePreview, stop: threading.Event, stats: dict, scroll: list[int]) -> None:
    """The viewer's side: poll ``due()``, preview; move to the next slice of ``scroll``."""
    moved = time.monotonic()
    try:
        while not stop.wait(TICK_S):
            if scroll and time.monotonic() - moved >= SCROLL_S:
                scroll.append(scroll.pop(0))
                view.show(z=scroll[0])
                moved = time.monotonic()
            if view.due() and (result := view.run()) is not None:
                stats["previews"] += 1
                stats["seconds"] += result.seconds
    except Exception as err:  # handed to the main thread
        stats["error"] = err


class LiveArm:
    """One live training run driven by hand, with the viewer's preview beside it."""

    def __init__(self, image: Volume, labels: np.ndarray, config: TrainConfig, folder: Path,
                 preview: bool = True) -> None:
        self.session = LiveSession(preview=preview)
        self.job = train(image, _volume(labels), config, folder, live=self.session)
        self.view = LivePreview(self.session, image) if preview else None
        self.z, self.steps = START[0], 0
        self.stats = {"previews": 0, "seconds": 0.0}

    def _next(self) -> float:
        t0 = time.perf_counter()
        try:
            event = next(self.job)
        except StopIteration:
            message = "the live run ended during the rounds: raise --live-iterations"
            raise SystemExit(message) from None
        self.steps = max(self.steps, int(event.metrics.get("iteration", 0)))
        return time.perf_counter() - t0

    def advance(self, seconds: float, scroll: list[int] | None = None) -> float:
        """Train for ``seconds`` inside ``next()``, the preview thread running."""
        stop, thread = threading.Event(), None
        if self.view is not None:
            self.view.show(z=scroll[0] if scroll else self.z)
            thread = threading.Thread(target=_play, args=(self.view, stop, self.stats,
                                                          scroll or []), daemon=True)
            thread.start()
        spent = 0.0
        try:
            while spent < seconds:
                spent += self._next()
        finally:
            stop.set()
            if thread is not None:
                thread.join()
        if "error" in self.stats:
            raise self.stats.pop("error")
        return spent

    def fresh_weights(self) -> tuple[LiveWeights, float]:
        """Weights published after the latest step (and the seconds that took)."""
        old = self.session.weights()
        version, spent = (old.version if old is not None else 0), 0.0
        self.session.enabled = False
        self.session.enabled = True  # the next step publishes
        while (weights := self.session.weights()) is None or weights.version <= version:
            spent += self._next()
        return weights, spent


def warm_up(image: Volume, labels: np.ndarray, config: TrainConfig, folder: Path) -> None:
    """One untimed live step and preview: imports and other one-time costs, paid by no arm."""
    warm = LiveArm(image, labels, config, folder)
    while warm.session.weights() is None:
        warm._next()
    warm.view.show(z=START[0])
    warm.view.run()
    warm.job.close()


def run_new(image: Volume, labels: np.ndarray, config: TrainConfig, folder: Path,
            seconds: float) -> tuple[int, float]:
    """A new run for ``seconds`` inside ``next()`` (or its time limit); steps and seconds."""
    job = train(image, _volume(labels), config, folder)
    steps, spent = 0, 0.0
    try:
        while spent < seconds:
            t0 = time.perf_counter()
            try:
                event = next(job)
            except StopIteration:
                break
            finally:
                spent += time.perf_counter() - t0
            steps = max(steps, int(event.metrics.get("iteration", 0)))
    finally:
        job.close()  # saves the model
    return steps, spent


def predict_score(source: Any, config: ModelConfig, image: np.ndarray,
                  truth_test: np.ndarray) -> tuple[np.ndarray, dict]:
    """Whole-stack labels with the fixed decoding (all cores), and the test strip's scores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(usable_cores())  # training is paused
    try:  # a Volume: Previewer reads ``image.data``, which a numpy array has too (its buffer)
        probs, _ = Previewer(config).probabilities(source, Volume(image, VOXEL, "user"),
                                                   box=(slice(None),) * 3)
        pred = decode_view(probs, config, DECODING)
    finally:
        torch.set_num_threads(threads)
    ev = evaluate(pred[:, TEST_Y:], truth_test)
    ap = ev.instances["0.5"]
    return pred, {"ap50": round(ap.ap, 4), "dice": round(ev.foreground_dice, 4),
                  "tp_fp_fn": [ap.tp, ap.fp, ap.fn]}


def worst_object(labels: np.ndarray, pred: np.ndarray, truth: np.ndarray) -> dict | None:
    """The user's pick: the worst-predicted 2D object of the training slices (None: all right).

    ``labels``, ``pred`` and ``truth`` are the (z, y, x) training part; returns the slice,
    the object's pixels, whether it is a truth object, its best IoU and size.
    """
    best = None
    for z in range(labels.shape[0]):
        seen = labels[z] if labels[z].any() else pred[z]
        pieces, n = cc3d.connected_components(truth[z], connectivity=4, return_N=True)
        ids = np.union1d([0], seen)
        flat = np.searchsorted(ids, seen)
        t_size, s_size = np.bincount(pieces.ravel(), minlength=n + 1), np.bincount(flat.ravel())
        inter = np.bincount(pieces.ravel().astype(np.int64) * ids.size + flat.ravel(),
                            minlength=(n + 1) * ids.size).reshape(n + 1, ids.size)
        iou = inter[1:, 1:] / (t_size[1:, None] + s_size[None, 1:] - inter[1:, 1:])
        found = [(float(iou[i].max(initial=0.0)), int(t_size[i + 1]), True, i + 1)
                 for i in range(n) if t_size[i + 1] >= SPECK]
        found += [(0.0, int(s_size[j]), False, j) for j in range(1, ids.size)
                  if not inter[1:, j].any() and s_size[j] >= SPECK]
        for score, size, is_truth, k in found:
            if best is None or (score, -size) < (best["iou"], -best["size"]):
                best = {"z": z, "truth": is_truth, "iou": score, "size": size,
                        "mask": (pieces if is_truth else flat) == k}
    return best if best is not None and best["iou"] < 1.0 else None


def correct(labels: np.ndarray, pred: np.ndarray, pick: dict) -> None:
    """Correct ``pick`` in ``labels`` (in place) as the panel's user would."""
    z, mask = pick["z"], pick["mask"]
    if not labels[z].any():  # accept the slice's prediction first
        accept(labels, pred[z], (slice(z, z + 1), slice(None), slice(None)), task="instance")
    plane = labels[z]
    hit = np.unique(plane[mask])
    plane[np.isin(plane, hit[hit > 0])] = 0
    if pick["truth"]:
        plane[mask] = labels.max() + 1


def _config(args: argparse.Namespace) -> TrainConfig:
    threads = args.threads or cpu_threads(leave_free=VIEWER_CORES)
    return TrainConfig(task="instance", seed=args.seed, threads=threads)


def _load(args: argparse.Namespace) -> tuple[np.ndarray, Volume, np.ndarray, np.ndarray]:
    """The whole image, its training part, and the truth instances of both parts."""
    if not (DATA / "images.tif").is_file():
        raise SystemExit(f"data not found in {DATA}")
    x = slice(0, args.crop_x)
    image, truth = (tifffile.imread(DATA / f"{name}.tif")[..., x] for name in ("images", "labels"))
    train_part, test_part = truth[:, :TRAIN_Y], truth[:, TEST_Y:]
    return image, _volume(image[:, :TRAIN_Y]), *(
        cc3d.connected_components(t, connectivity=6).astype(np.uint32)
        for t in (train_part, test_part))


def _start_labels(truth_train: np.ndarray) -> np.ndarray:
    """The truth of the ``START`` slices, new ids in each slice (as a user paints them)."""
    labels = np.zeros(truth_train.shape, np.uint32)
    for z in START:
        rank = np.searchsorted(np.union1d([0], truth_train[z]), truth_train[z])
        labels[z] = np.where(rank > 0, rank + labels.max(), 0)
    return labels


def _meta(args: argparse.Namespace, config: TrainConfig) -> dict:
    return {"benchmark": "interactive_loop", "run": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seed": args.seed, "threads": config.threads, "round_s": args.round_s,
            "crop_x": args.crop_x}


def _append(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)


def rounds(args: argparse.Namespace, work: Path) -> None:
    """The three arms, round by round."""
    image, train_image, truth_train, truth_test = _load(args)
    base = _config(args)
    timed = replace(base, time_limit=args.round_s / 60)
    labels = {arm: _start_labels(truth_train) for arm in ARMS}
    objects = dict.fromkeys(ARMS, 0)
    config = replace(base, iterations=args.live_iterations)
    warm_up(train_image, labels["live"], config, work / "warm-up")
    live = LiveArm(train_image, labels["live"], config, work / "live")
    meta, history = _meta(args, base), {a: [] for a in ARMS}
    print(f"threads {base.threads}, {args.round_s:g} s rounds, seed {args.seed}, work {work}")
    print(f"{'round':>5} | {'live AP':>7} {'scratch':>7} {'finetune':>8} | steps live/scr/ft "
          "| slices/objects painted live, scratch, finetune")
    previous = None
    for r in range(1, args.rounds + 1):
        done = {}
        before = live.steps
        spent = live.advance(args.round_s)
        weights, extra = live.fresh_weights()
        done["live"] = (weights.state, weights.config, live.steps - before, spent + extra)
        folder = work / "scratch" / f"r{r}"
        steps, spent = run_new(train_image, labels["scratch"], timed, folder, args.round_s)
        model = load_model(folder, device="cpu")
        done["scratch"] = (model, model.config, steps, spent)
        folder = work / "finetune" / f"r{r}"
        config = replace(timed, init_from=str(previous)) if previous is not None else timed
        steps, spent = run_new(train_image, labels["finetune"], config, folder, args.round_s)
        previous, model = folder, load_model(folder, device="cpu")
        done["finetune"] = (model, model.config, steps, spent)
        cells, rows = [], []
        for arm in ARMS:
            source, mconfig, steps, spent = done[arm]
            pred, scores = predict_score(source, mconfig, image, truth_test)
            seen = pred[:, :TRAIN_Y]
            pick = None if r == args.rounds else worst_object(labels[arm], seen, truth_train)
            if pick is not None:
                correct(labels[arm], seen, pick)
                objects[arm] += 1
                if arm == "live":
                    live.session.update(labels[arm], [pick["z"]])
                    live.z = pick["z"]
            painted = int(sum(labels[arm][z].any() for z in range(labels[arm].shape[0])))
            history[arm].append(scores["ap50"])
            cells.append((scores["ap50"], steps, f"{painted}/{objects[arm]}"))
            rows.append(meta | scores | {
                "arm": arm, "round": r, "steps": steps, "seconds": round(spent, 1),
                "painted_slices": painted, "corrected": objects[arm],
                "pick": pick and {k: pick[k] for k in ("z", "truth", "iou", "size")}})
        print(f"{r:>5} | {cells[0][0]:7.3f} {cells[1][0]:7.3f} {cells[2][0]:8.3f} | "
              f"{'/'.join(str(c[1]) for c in cells):>16} | {', '.join(c[2] for c in cells)}")
        _append(args.results, rows)  # round by round: a crash keeps what was measured
    live.job.close()
    stats = live.stats
    target = round(0.9 * max(max(v) for v in history.values()), 4)
    reach = {a: next((i + 1 for i, v in enumerate(history[a]) if v >= target), None)
             for a in ARMS}
    print(f"first round with AP@0.5 >= {target} (90 % of the best): {reach}")
    print(f"live previews: {stats['previews']} taking {stats['seconds']:.1f} s")
    _append(args.results, [meta | {
        "summary": True, "target_ap50": target, "first_round": reach, "ap50": history,
        "previews": stats["previews"], "preview_s": round(stats["seconds"], 1)}])
    plot(history, args)


def plot(history: dict[str, list[float]], args: argparse.Namespace) -> None:
    """AP@0.5 per round, one line per arm, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, label in zip(ARMS, ("live loop (one run)", "(a) new run from scratch",
                                 "(b) new run fine-tuned")):
        ax.plot(range(1, len(history[arm]) + 1), history[arm], marker="o", label=label)
    ax.set(xlabel=f"round ({args.round_s:g} s of training, then one correction)",
           ylabel="AP@0.5, test strip", ylim=(0, 1),
           title=f"Interactive loop, chloroplasts (seed {args.seed})")
    ax.set_xticks(range(1, len(history[ARMS[0]]) + 1))
    ax.grid(alpha=0.3)
    ax.legend()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")


def preview_cost(args: argparse.Namespace, work: Path) -> None:
    """Steps of a live run with the preview thread against one with the preview off."""
    _, train_image, truth_train, _ = _load(args)
    labels = _start_labels(truth_train)
    config = replace(_config(args), iterations=args.live_iterations)
    seconds, found = args.round_s * args.rounds, {}
    warm_up(train_image, labels, config, work / "warm-up")
    for on in (True, False):
        arm = LiveArm(train_image, labels, config, work / f"cost-{'on' if on else 'off'}", on)
        spent = arm.advance(seconds, scroll=list(range(labels.shape[0])) if on else None)
        arm.job.close()
        found[on] = (arm.steps, spent, dict(arm.stats))
        print(f"preview {'on ' if on else 'off'}: {arm.steps} steps in {spent:.0f} s"
              + (f", {arm.stats['previews']} previews taking {arm.stats['seconds']:.1f} s"
                 if on else ""))
    lost = 100 * (1 - found[True][0] / max(found[False][0], 1))
    print(f"steps lost to the preview: {lost:.1f} % (target <= 10 %)")
    _append(args.results, [_meta(args, config) | {
        "mode": "preview-cost", "seconds": seconds, "steps_on": found[True][0],
        "steps_off": found[False][0], "lost_pct": round(lost, 1),
        "previews": found[True][2]["previews"], "preview_s": round(found[True][2]["seconds"], 1)}])


def main() -> None:
    """Parse the options and run the rounds or the preview-cost check."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--round-s", type=float, default=60.0, help="training seconds per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="training threads (default: the panel's, all cores but one)")
    p.add_argument("--live-iterations", type=int, default=TrainConfig().iterations,
                   help="the live run's iterations (its schedule; it must outlast the rounds)")
    p.add_argument("--crop-x", type=int, default=None, help="use x < N only (quick tests)")
    p.add_argument("--work", type=Path, default=None, help="keep the models here")
    p.add_argument("--results", type=Path, default=Path("benchmarks/results-loop.jsonl"))
    p.add_argument("--plot", type=Path, default=Path("docs/loop_benchmark.png"))
    p.add_argument("--preview-cost", action="store_true",
                   help="measure the preview's cost in steps instead")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="anatomics-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    (preview_cost if args.preview_cost else rounds)(args, work)


if __name__ == "__main__":
    main()
