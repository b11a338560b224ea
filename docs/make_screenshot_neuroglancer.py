"""Screenshot of ``anatomics view`` on the bundled chloroplast sample, in headless Chromium.

Run (Chromium from the system packages, playwright from pip)::

    python docs/make_screenshot_neuroglancer.py

Writes ``docs/screenshots/neuroglancer.png``: the image, the painted chloroplasts and
their segment list with each object's volume in µm³.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from napari_anatomics.analyze.measure import measure
from napari_anatomics.io.samples import load_sample
from napari_anatomics.tasks.view import serve

OUT = Path(__file__).parent / "screenshots" / "neuroglancer.png"


def main() -> None:
    image, labels = load_sample()
    table = measure(labels, labels.voxel_size)
    view = serve(image, [labels], [table])
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 850})
        page.goto(view.url)
        page.wait_for_selector("text=µm³", timeout=120_000)
        page.wait_for_timeout(8000)  # let every visible chunk arrive
        page.screenshot(path=str(OUT))
        browser.close()
    view.close()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
