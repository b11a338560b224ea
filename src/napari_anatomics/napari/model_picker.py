"""The model drop-down shared by the Train and Auto-label panels.

It lists the model folders of a registry folder
(:func:`napari_anatomics.models.store.list_models`); a "..." button adds any
other model folder, or a BioImage.IO model package (.zip; see zoo_import):
the package is imported into a model folder next to it
(:func:`~napari_anatomics.models.zoo_import.import_model`) and chosen; a package
that cannot be used is refused in one line. Every open drop-down refreshes when
a training run ends.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QMenu, QPushButton, QWidget

from .fields import tip

#: Every live drop-down, refreshed together by :func:`refresh_all`.
_COMBOS: weakref.WeakSet = weakref.WeakSet()


def prepare_torch() -> None:
    """Get torch ready for jobs in worker threads of the napari process.

    Imports ``torch._dynamo`` now, when a panel opens: imported lazily by the
    first optimizer in the worker thread, it stalls the viewer for most of a
    second in the middle of a run. (Triton is kept out of the napari process by
    :mod:`napari_anatomics.napari` itself.) Imports the modules of training, its
    live preview and prediction too: imported by the first Start, they held the
    event loop for 0.2 s as the run began (``benchmarks/live_preview_stall.py``).
    """
    import torch._dynamo  # noqa: F401

    from ..predict import tiled  # noqa: F401
    from ..train import live, loop, preview  # noqa: F401
    from . import live_preview  # noqa: F401


def default_model_root() -> Path:
    """Where the panels keep trained models: ``$ANATOMICS_MODELS`` or ``~/anatomics-models``."""
    return Path(os.environ.get("ANATOMICS_MODELS", Path.home() / "anatomics-models"))


def unique_folder(root: str | Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``... when that folder is taken."""
    root = Path(root)
    folder, n = root / name, 1
    while folder.exists() and any(folder.iterdir()):
        n += 1
        folder = root / f"{name}-{n}"
    return folder


def refresh_all(new_model: str | Path | None = None) -> None:
    """Re-read the registry in every open model drop-down (after training).

    Drop-downs with ``follow_new`` set (Auto-label's) also choose ``new_model``.
    """
    for combo in list(_COMBOS):
        try:
            combo.refresh()
        except RuntimeError:  # its panel was closed and Qt deleted the widgets
            _COMBOS.discard(combo)
            continue
        if new_model is not None and combo.follow_new:
            combo.select_folder(new_model)


class ModelCombo(QWidget):
    """A drop-down of the trained models in a folder, plus "..." for any model folder.

    Parameters
    ----------
    none_text : str, optional
        When given, a first entry meaning "no model" (e.g. train from scratch).
    """

    def __init__(self, none_text: str | None = None) -> None:
        super().__init__()
        self._none_text = none_text
        self._root = default_model_root()
        self._extra: list[Path] = []
        self._folders: list[Path | None] = []
        #: Choose each newly trained model (see :func:`refresh_all`).
        self.follow_new = False
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(16)
        self.combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        browse = QPushButton("...")
        browse.setFixedWidth(30)
        tip(browse, "model_picker.browse")
        menu = QMenu(browse)
        menu.addAction("Model folder...", self._browse)
        menu.addAction("BioImage.IO package (.zip)...", self._browse_package)
        browse.setMenu(menu)
        #: The last package refused, in one line ("" when none).
        self.error = ""
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, stretch=1)
        layout.addWidget(browse)
        _COMBOS.add(self)
        self.refresh()

    def set_root(self, root: str | Path) -> None:
        """List the models under ``root``."""
        self._root = Path(root) if root else default_model_root()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the registry, keeping the current choice when it still exists."""
        from ..models.store import list_models

        current = self.folder()
        try:
            models = list_models(self._root) if self._root.is_dir() else []
        except (OSError, ValueError):
            models = []
        entries: list[tuple[str, Path | None]] = []
        if self._none_text is not None:
            entries.append((self._none_text, None))
        listed = {Path(m.path).resolve() for m in models}
        for model in models:
            entries.append((model.describe(), Path(model.path)))
        for folder in self._extra:
            if folder.resolve() not in listed:
                entries.append((f"{folder.name} ({folder.parent})", folder))
        self.combo.blockSignals(True)
        self.combo.clear()
        for text, folder in entries:
            self.combo.addItem(text)
            if folder is not None:
                self.combo.setItemData(self.combo.count() - 1, str(folder), 3)  # tooltip
        self._folders = [folder for _, folder in entries]
        if current is not None:
            resolved = [f.resolve() if f is not None else None for f in self._folders]
            if Path(current).resolve() in resolved:
                self.combo.setCurrentIndex(resolved.index(Path(current).resolve()))
        self.combo.blockSignals(False)

    def folder(self) -> str | None:
        """The chosen model folder, or None."""
        index = self.combo.currentIndex()
        if 0 <= index < len(self._folders) and self._folders[index] is not None:
            return str(self._folders[index])
        return None

    def select_folder(self, folder: str | Path) -> None:
        """Choose ``folder``, adding it to the list when it is not in the registry."""
        folder = Path(folder)
        resolved = [f.resolve() if f is not None else None for f in self._folders]
        if folder.resolve() not in resolved:
            self._extra.append(folder)
            self.refresh()
            resolved = [f.resolve() if f is not None else None for f in self._folders]
        if folder.resolve() in resolved:
            self.combo.setCurrentIndex(resolved.index(folder.resolve()))

    def count(self) -> int:
        """Number of entries (the "none" entry included)."""
        return self.combo.count()

    def import_package(self, package: str | Path) -> Path | None:
        """Import a BioImage.IO package into a new model folder next to it, and choose it.

        Returns
        -------
        Path or None
            The model folder; None when the package cannot be used (the reason is
            shown in one line and kept in :attr:`error`).
        """
        from ..models.bioimageio import PackageError
        from ..models.zoo_import import import_model

        package = Path(package)
        stem = package.parent.name if package.name == "rdf.yaml" else package.stem
        folder = unique_folder(package.parent, stem)
        try:
            folder = import_model(package, folder)
        except (PackageError, ImportError) as err:
            self.error = f"Model: {err}"
            show_error(self.error)
            return None
        self.error = ""
        self.select_folder(folder)
        return folder

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a model folder", str(self._root))
        if path:
            self.select_folder(path)

    def _browse_package(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a BioImage.IO package", str(self._root), "BioImage.IO (*.zip rdf.yaml)"
        )
        if path:
            self.import_package(path)
