"""AddonCatalog: the LoRAs and embeddings of the model folders, listed off the GUI thread.

The picker and the ``<lora:`` completer read the same lists. A refresh asked for
while one runs runs again after it, so the lists end up matching the folders.
Listing is cached by desktop/core/addons.py (a header is read once per file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtCore import QObject, Signal

from desktop.core import addons
from desktop.core.addons import AddonFile

from .background import Background


class AddonCatalog(QObject):
    """Signals:
    changed(): new lists arrived (after refresh()).
    failed(str): the folders could not be listed; a sentence.
    """

    changed = Signal()
    failed = Signal(str)

    def __init__(self, folders: Callable[[], Iterable[str]], parent: QObject | None = None):
        super().__init__(parent)
        self.folders = folders  # the settings' model folders (Sfumato's own are always searched)
        self.background = Background(self)
        self.files: dict[str, list[AddonFile]] = {kind: [] for kind in addons.KINDS}
        self.loaded = False
        self._running = False
        self._again = False

    def refresh(self) -> None:
        if self._running:
            self._again = True
            return
        self._running = True
        folders = list(self.folders())
        self.background.run(lambda: {kind: addons.list_addons(kind, folders) for kind in addons.KINDS},
                            self._listed, self._failed, name="addon-listing")

    def ensure_loaded(self) -> None:
        """Start a listing when there is none yet."""
        if not self.loaded and not self._running:
            self.refresh()

    def busy(self) -> bool:
        return self._running

    def names(self, kind: str) -> list[str]:
        return [f.name for f in self.files[kind]]

    def close(self) -> None:
        self.background.closed = True
        self.background.wait(5.0)

    def _listed(self, files: dict[str, list[AddonFile]]) -> None:
        self._running = False
        self.files, self.loaded = files, True
        self.changed.emit()
        if self._again:
            self._again = False
            self.refresh()

    def _failed(self, error: BaseException) -> None:
        self._running = False
        self.failed.emit(f"The LoRA and embedding folders could not be listed: {error}")
