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
shown; the Train panel's defaults: one training thread, one core left to the viewer):

==================  ======  ===========  =========  ====================  ======
run                 steps   stall max    stall p99  latency med / max     target
==================  ======  ===========  =========  ====================  ======
before the fix (1)
live preview, 60 s  68      1033 ms      7 ms       825 / 1126 ms (20)    100 ms
no preview, 60 s    67      35 ms        6 ms       --                    100 ms
live preview, 30 s  33      1165 ms      7 ms       837 / 1347 ms (10)    100 ms
same, image in RAM  32      1324 ms      9 ms       867 / 1428 ms (10)    100 ms
preview at nice 10  22      8108 ms      5981 ms    6222 / 8588 ms (3)    100 ms
pool of 8 (2), 20s  25      402 ms       8 ms       899 / 1407 ms (7)     100 ms
after the fix (3)
live preview, 60 s  67      418 ms       8 ms       901 / 1220 ms (20)    100 ms
no preview, 60 s    69      64 ms        6 ms       --                    100 ms
==================  ======  ===========  =========  ====================  ======

(1) The event loop stopped for 0.6-1.3 s at every slice change, about as long as that
slice's preview ran: not the image read (the same with the image in memory), not the GIL
(no Python thread held it for long, ``py-spy --gil``; the GUI thread idle in Qt's loop), and
a lower priority for the preview thread made the gaps as long as the slower previews: the
loop waited for the preview's thread. (2) Qt's global thread pool holds one thread per core:
2 here, both taken by the training run and its preview. With room for 8 the gaps went.
(3) ``napari.worker.start_worker`` makes room for one more thread as each of our workers
starts (jobs, previews, edits). 18 of the 20 slice changes now stall under 65 ms; two did not
(139 ms as the first preview layer is added, and one of 418 ms at 43 s, not explained). The
stall target is met in the 99th percentile but **not at its maximum**. The preview cost no
steps here (67 against 69, within the run-to-run noise).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from proofread_stall import spin  # this folder: run as benchmarks/live_preview_stall.py

SLICES_PAINTED = (0, 5)


def run(preview: bool, seconds: float, every: float, show: bool, models: Path) -> dict:
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
    scale = viewer.layers["image"].scale[0]
    viewer.dims.set_point(0, 1 * scale)
    panel.start()
    spin(120, until=lambda: panel.progress.value() > 0)  # the run has started
    timer.start()
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
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as models:
        for preview in (True, False):
            row = run(preview, args.seconds, args.every, args.show, Path(models))
            print(row, flush=True)
            rows.append(row)
    print("run              | steps | stall max ms | stall p99 ms | latency med / max ms")
    for r in rows:
        name = "live preview" if r["preview"] else "no preview"
        print(f"{name:16} | {r['steps']:5d} | {r['stall_max']:12.0f} | {r['stall_p99']:12.0f} | "
              f"{r['latency_med']:7.0f} / {r['latency_max']:.0f} ({r['previews']} slices)")


if __name__ == "__main__":
    main()
