"""The live preview in the viewer: event-loop stall, and how soon a new slice is previewed.

Run::

    QT_QPA_PLATFORM=offscreen python benchmarks/live_preview_stall.py
    xvfb-run -a python benchmarks/live_preview_stall.py --show   # the canvas drawn

A user's session on the bundled sample (``load_sample()``, 10 x 292 x 823 voxels) in a
``napari.Viewer``: two slices painted (the sample's labels on slices 0 and 5, the rest
unknown), the Train panel at its defaults (the user sets nothing but the layers), Start, then
every ``--every`` seconds the next slice is shown (1, 2, 3, ... as a user scrolls) for
``--seconds`` of training. A ``QTimer`` ticks every 5 ms; the **stall** is the longest gap
between ticks while training runs (the work of the training thread, the preview worker and
the layer swaps in the GUI thread, whatever holds the event loop); the **latency** is the time
from a slice change until the preview layer shows that slice. Then the same with the preview
switched off (the baseline: Train as it was before the live loop). Targets: stall 100 ms,
latency 1-2 s on a CPU, and the preview's cost in training steps ~10 %.

Results of 2026-12-01 (2 cores, AMD EPYC, no GPU; napari 0.9.2; ``xvfb-run``, canvas not
shown unless said; the Train panel's defaults: one training thread, one core left to the
viewer). "Start click": the longest gap from the click until the run's first step (measured
from (4) on):

=======================  ======  =====  ===========  =========  ====================  ======
run                      steps   Start  stall max    stall p99  latency med / max     target
=======================  ======  =====  ===========  =========  ====================  ======
before the fix (1)
live preview, 60 s       68             1033 ms      7 ms       825 / 1126 ms (20)    100 ms
no preview, 60 s         67             35 ms        6 ms       --                    100 ms
live preview, 30 s       33             1165 ms      7 ms       837 / 1347 ms (10)    100 ms
same, image in RAM       32             1324 ms      9 ms       867 / 1428 ms (10)    100 ms
preview at nice 10       22             8108 ms      5981 ms    6222 / 8588 ms (3)    100 ms
pool of 8 (2), 20s       25             402 ms       8 ms       899 / 1407 ms (7)     100 ms
after the fix (3)
live preview, 60 s       67             418 ms       8 ms       901 / 1220 ms (20)    100 ms
no preview, 60 s         69             64 ms        6 ms       --                    100 ms
--diagnose (4)
live preview, 60 s       133            141 ms       7 ms       599 / 973 ms (20)     100 ms
live preview, 60 s       134     184    349 ms       8 ms       622 / 932 ms (20)     100 ms
no preview, 60 s         138     75     26 ms        6 ms       --                    100 ms
heap frozen (5)
live preview, 60 s       131     227    47 ms        7 ms       532 / 1042 ms (20)    100 ms
no preview, 60 s         145     36     24 ms        6 ms       --                    100 ms
imports at panel open,
layer a loop turn later
(6)
live preview, 60 s       131     91     46 ms        8 ms       514 / 1035 ms (20)    100 ms
no preview, 60 s         137     14     25 ms        6 ms       --                    100 ms
same, canvas drawn       122     99     74 ms        12 ms      596 / 1117 ms (20)    100 ms
no preview, drawn        120     43     48 ms        11 ms      --                    100 ms
=======================  ======  =====  ===========  =========  ====================  ======

(1) The event loop stopped for 0.6-1.3 s at every slice change, about as long as that
slice's preview ran: not the image read (the same with the image in memory), not the GIL
(no Python thread held it for long, ``py-spy --gil``; the GUI thread idle in Qt's loop), and
a lower priority for the preview thread made the gaps as long as the slower previews: the
loop waited for the preview's thread. (2) Qt's global thread pool holds one thread per core:
2 here, both taken by the training run and its preview. With room for 8 the gaps went.
(3) ``napari.worker.start_worker`` makes room for one more thread as each of our workers
starts (jobs, previews, edits). 18 of the 20 slice changes then stalled under 65 ms; two did
not (139 ms as the first preview layer was added, and one of 418 ms, not explained then).
(4) ``--diagnose`` (``stall_probe.StallProbe``: a watchdog thread samples every thread's stack
while the loop is late, and ``gc.callbacks`` time each collection) explained both: the long
gap is a **full garbage collection** (generation 2, 345 ms: it walks the ~400,000 objects
napari and torch keep, holding the GIL; where it falls in a run is chance, hence 418 ms at
43 s once and none in another run), and the 141 ms is napari adding a layer (its visuals,
controls and selection) while the run starts. The Start click, first in the process,
also imported the training and preview modules (184 ms). (5) ``core.heap.freeze_heap``:
while a job runs, the objects alive at its start are out of the collector's walks
(``gc.freeze``, given back as the job ends, so nothing leaks); the preview layer is added
empty at the Start click instead of when the first preview arrives. No collection over 5 ms
since; the Start click then paid the imports and the layer add together. (6) The panels
import the training, preview and prediction modules as they open (with ``torch._dynamo``,
which they already did), and the preview layer is added one event-loop turn after the click.
**Every gap is now under 100 ms**, with the canvas drawn too; the preview costs 4 % of the
steps without the canvas drawn (131 against 137) and none with it (122 against 120), and a
new slice is previewed in 0.5-0.6 s (median), 1.1 s at most.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from proofread_stall import spin  # this folder: run as benchmarks/live_preview_stall.py
from stall_probe import StallProbe

SLICES_PAINTED = (0, 5)


def run(
    preview: bool, seconds: float, every: float, show: bool, models: Path, diagnose: bool = False
) -> dict:
    """One training run in the viewer; returns steps, tick gaps and preview latencies."""
    import napari
    from qtpy.QtCore import QTimer

    from napari_anatomics.io.samples import load_sample
    from napari_anatomics.napari.layers import add_volume
    from napari_anatomics.napari.panels.train import TrainWidget

    image, labels = load_sample()
    painted = np.zeros(labels.data.shape, np.uint32)
    for z in SLICES_PAINTED:
        painted[z] = np.asarray(labels.data[z])
    viewer = napari.Viewer(show=show)
    add_volume(viewer, image, "image", name="image")
    viewer.add_labels(painted, name="labels", scale=image.voxel_size)
    panel = TrainWidget(viewer)
    panel.show()
    panel.image_combo.set_layer(viewer.layers["image"])
    panel.labels_combo.set_layer(viewer.layers["labels"])
    panel.out_dir.setText(str(models))
    panel.preview_box.setChecked(preview)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe = StallProbe() if diagnose else None
    if probe is not None:
        timer.timeout.connect(probe.beat)
    scale = viewer.layers["image"].scale[0]
    viewer.dims.set_point(0, 1 * scale)
    timer.start()
    if probe is not None:
        probe.start()
    spin(0.2)
    clicked = time.perf_counter()
    QTimer.singleShot(0, panel.start)  # the Start click, from the event loop
    spin(120, until=lambda: panel.progress.value() > 0)  # the run has started
    started = time.perf_counter()
    click = np.array([t for t in ticks if t >= clicked])
    start_stall = float(np.diff(np.r_[clicked, click]).max()) * 1e3
    if probe is not None:
        print("the Start click:")
        probe.report([clicked, *click], origin=clicked)
    ticks.clear()
    latencies, end, z = [], time.perf_counter() + seconds, 1
    while time.perf_counter() < end:
        z = z % (image.data.shape[0] - 1) + 1
        t0 = time.perf_counter()
        viewer.dims.set_point(0, z * scale)

        def shown(z=z) -> bool:
            live = panel.live
            return live is not None and live.shown is not None and live.shown.region[0].start == z

        spin(every, until=shown if preview else None)
        if preview and shown():
            latencies.append(time.perf_counter() - t0)
        spin(max(0.0, every - (time.perf_counter() - t0)))
    timer.stop()
    if probe is not None:
        probe.stop()
        probe.report(ticks)
    steps = panel.progress.value()
    panel.stop()
    spin(300, until=lambda: not panel.busy)
    panel.close()
    viewer.close()
    gaps = np.diff(np.array(ticks)) * 1e3
    worst = np.argsort(gaps)[::-1][:5]
    print("longest gaps (ms, at s):", [(round(gaps[i]), round(ticks[i] - ticks[0], 1))
                                       for i in worst])  # fmt: skip
    return {
        "preview": preview,
        "steps": steps,
        "start_stall": start_stall,
        "start_s": started - clicked,
        "stall_max": float(gaps.max()),
        "stall_p99": float(np.percentile(gaps, 99)),
        "latency_med": float(np.median(latencies)) * 1e3 if latencies else float("nan"),
        "latency_max": float(np.max(latencies)) * 1e3 if latencies else float("nan"),
        "previews": len(latencies),
    }


def main() -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="training time per run")
    parser.add_argument("--every", type=float, default=3.0, help="seconds per slice shown")
    parser.add_argument("--show", action="store_true", help="draw the canvas (xvfb-run)")
    parser.add_argument("--diagnose", action="store_true",
                        help="print what each thread did in every gap over 100 ms")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without preview")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as models:
        for preview in (True,) if args.no_baseline else (True, False):
            row = run(preview, args.seconds, args.every, args.show, Path(models), args.diagnose)
            print(row, flush=True)
            rows.append(row)
    print("run          | steps | Start click ms | stall max ms | stall p99 ms | "
          "latency med / max ms")
    for r in rows:
        name = "live preview" if r["preview"] else "no preview"
        print(f"{name:12} | {r['steps']:5d} | {r['start_stall']:14.0f} | {r['stall_max']:12.0f} | "
              f"{r['stall_p99']:12.0f} | {r['latency_med']:7.0f} / {r['latency_max']:.0f} "
              f"({r['previews']} slices)")


if __name__ == "__main__":
    main()
