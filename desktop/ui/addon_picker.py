"""AddonPicker: choose a LoRA or an embedding to put in the prompt.

A non-modal window with a tab per kind, a search field (names and trigger
words), and a list showing each file's preview picture (when one sits beside
it, as A1111 and Civitai Helper store them), name, model family and trigger
words. Files made for another family than the current model are marked; for a flow-matching model (FLUX.1,
SD 3.5, ...) only the LoRAs of its family are listed, and the Embeddings tab is disabled (they take none).
Double-click or Enter puts the file in the prompt (through `chosen`); the
window stays open to add more. It lists again each time it is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QColor, QDesktopServices, QIcon, QImage, QKeySequence, QPalette, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from desktop.core import addons, families
from desktop.core.addons import EMBEDDING, LORA, AddonFile
from desktop.core.imageio import MAX_PIXELS, open_picture, to_array
from desktop.core.model_sources import FAMILY_LABELS
from desktop.core.modelfiles import Family

from .addon_catalog import AddonCatalog
from .background import Background
from .prompt_panel import lacks
from .qimage import to_qimage

THUMB = 64
KIND_WORDS = {LORA: ("LoRA", "LoRAs"), EMBEDDING: ("embedding", "embeddings")}
FileRole = Qt.ItemDataRole.UserRole


class AddonPicker(QDialog):
    """Signals:
    chosen(str, str): the kind ("lora" or "embedding") and name of the file the person picked.
    """

    chosen = Signal(str, str)

    def __init__(self, catalog: AddonCatalog, family: Callable[[], str], parent: QWidget | None = None):
        super().__init__(parent)
        self.catalog = catalog
        self.family = family  # the current model's family ("sd1", "sdxl", ...)
        self.background = Background(self)
        self._icons: dict[Path, QIcon] = {}
        self.setWindowTitle("LoRAs and embeddings")
        self.setModal(False)
        self._build()
        catalog.changed.connect(self._show_files)
        catalog.failed.connect(self._failed)

    def _build(self) -> None:
        self.tabs = QTabBar()
        self.tabs.addTab("LoRA")
        self.tabs.addTab("Embeddings")
        self.tabs.setToolTip("LoRAs change what the model paints; embeddings are words it learned "
                             "(most are used in the negative prompt)")
        self.tabs.currentChanged.connect(lambda _i: self._show_files())
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search names and trigger words...")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _t: self._show_files())
        self.search.returnPressed.connect(self._activate_current)  # the buttons are no dialog default: one insert
        self.list = QListWidget()
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setWordWrap(True)
        self.list.setUniformItemSizes(False)
        self.list.setAlternatingRowColors(True)
        self.list.itemActivated.connect(self._activated)
        self.empty = QLabel()
        self.empty.setWordWrap(True)
        self.empty.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.empty.setMargin(12)
        self.status = QLabel()
        self.insert_button = QPushButton("Insert")
        self.insert_button.setToolTip("Put the chosen file in the prompt (or double-click it)")
        self.insert_button.clicked.connect(self._activate_current)
        self.open_button = QPushButton()
        self.open_button.clicked.connect(self.open_folder)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("List the folders again (F5)")
        self.refresh_button.clicked.connect(self.catalog.refresh)
        QShortcut(QKeySequence("F5"), self, activated=self.catalog.refresh)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        for button in (self.insert_button, self.open_button, self.refresh_button, close):
            button.setAutoDefault(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.refresh_button)
        buttons.addStretch(1)
        buttons.addWidget(self.insert_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.search)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.empty, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(460, 520)
        self.search.installEventFilter(self)

    # -- what it shows ---------------------------------------------------------------------

    def kind(self) -> str:
        return LORA if self.tabs.currentIndex() == 0 else EMBEDDING

    def set_kind(self, kind: str) -> None:
        self.tabs.setCurrentIndex(0 if kind == LORA else 1)

    def open(self) -> None:
        """Show the window and list the folders again (files may have been added)."""
        self.show()
        self.activateWindow()
        self.search.setFocus()
        self.catalog.refresh()
        self._show_files()

    def _show_files(self) -> None:
        current = self.family()
        embeddings = families.supports(current, families.EMBEDDINGS)
        if not embeddings and self.tabs.currentIndex() == 1:
            blocked = self.tabs.blockSignals(True)
            self.tabs.setCurrentIndex(0)
            self.tabs.blockSignals(blocked)
        self.tabs.setTabEnabled(1, embeddings)
        self.tabs.setTabToolTip(1, lacks(current, families.EMBEDDINGS))
        kind = self.kind()
        one, many = KIND_WORDS[kind]
        folder = addons.own_folder(kind)
        self.open_button.setText(f"Open {one} folder")
        self.open_button.setToolTip(f"Open {folder}, where Sfumato's own {many} go")
        files = self.catalog.files[kind]
        if families.is_flow(current):  # an SD LoRA (or one that does not say) is refused by a flow model
            files = [f for f in files if f.family.value == current]
        words = self.search.text().casefold().split()
        shown = [f for f in files if all(w in _searchable(f) for w in words)]
        self.list.clear()
        for file in shown:
            self.list.addItem(self._item(file, current))
        if shown:
            self.list.setCurrentRow(0)
        self.list.setVisible(bool(shown))
        self.empty.setVisible(not shown)
        self.insert_button.setEnabled(bool(shown))
        if not files and families.is_flow(current):
            label = families.spec(current).label
            self.empty.setText(f"No {label} {many} found yet.\n\nPut {label} {one} files (.safetensors) in {folder} "
                               "— the button below opens it — or in another app's LoRA folder, then press Refresh. "
                               f"LoRAs for SD 1.x or SDXL are not listed: {label} models can't use them.")
        elif not files:
            self.empty.setText(
                f"No {many} found yet.\n\nPut {one} files (.safetensors) in {folder} — the button below "
                f"opens it — or in the {many} folder of AUTOMATIC1111, ComfyUI, InvokeAI or Fooocus, after "
                "adding that app's model folder in Models > Manage models. Then press Refresh.")
        else:
            self.empty.setText(f"No {one} matches “{self.search.text().strip()}”.")
        busy = self.catalog.busy()
        self.status.setText("Looking in the model folders..." if busy else
                            f"{len(shown)} of {len(files)} {many}" if words else f"{len(files)} {many}")
        self._load_previews(shown)

    def _item(self, file: AddonFile, current: str) -> QListWidgetItem:
        label = FAMILY_LABELS.get(file.family, "")
        lines = [f"{file.name}   [{label}]" if label else file.name]
        other = file.family is not Family.UNKNOWN and file.family.value != current
        if other:
            lines[0] += f" — for {label}, not this model"
        if file.trigger_words:
            lines.append("Trigger: " + ", ".join(file.trigger_words))
        item = QListWidgetItem("\n".join(lines))
        item.setData(FileRole, file)
        item.setIcon(self._icons.get(file.preview) or _blank_icon())
        tip = [str(file.path)]
        if other:
            tip.append(f"Made for {label}; the current model is {FAMILY_LABELS.get(Family(current), current)}"
                       if current in Family._value2member_map_ else f"Made for {label}.")
        if file.trigger_words:
            tip.append("Trigger words: " + ", ".join(file.trigger_words))
        item.setToolTip("\n".join(tip))
        if other:
            item.setForeground(self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        return item

    def _load_previews(self, files: list[AddonFile]) -> None:
        wanted = [f.preview for f in files if f.preview is not None and f.preview not in self._icons][:200]
        if wanted:
            for path in wanted:
                self._icons[path] = _blank_icon()  # asked once, shown when it arrives
            self.background.run(lambda: [(p, _thumbnail(p)) for p in wanted], self._previews_loaded,
                                lambda _error: None, name="addon-previews")

    def _previews_loaded(self, loaded: list[tuple[Path, QImage]]) -> None:
        for path, image in loaded:
            if not image.isNull():
                self._icons[path] = QIcon(QPixmap.fromImage(image))
        for row in range(self.list.count()):
            item = self.list.item(row)
            file = item.data(FileRole)
            if file.preview in self._icons:
                item.setIcon(self._icons[file.preview])

    def _failed(self, message: str) -> None:
        self.status.setText(message)

    # -- actions ---------------------------------------------------------------------------

    def _activated(self, item: QListWidgetItem) -> None:
        file = item.data(FileRole)
        self.chosen.emit(file.kind, file.name)

    def _activate_current(self) -> None:
        item = self.list.currentItem()
        if item is not None and self.list.isVisible():
            self._activated(item)

    def open_folder(self) -> None:
        folder = addons.ensure_own_folder(self.kind())
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def eventFilter(self, watched, event) -> bool:
        # Up and Down in the search field move through the list, as in a launcher.
        if watched is self.search and event.type() == event.Type.KeyPress and event.key() in (
                Qt.Key.Key_Down, Qt.Key.Key_Up) and self.list.count():
            row = self.list.currentRow() + (1 if event.key() == Qt.Key.Key_Down else -1)
            self.list.setCurrentRow(max(0, min(self.list.count() - 1, row)))
            return True
        return super().eventFilter(watched, event)


def _searchable(file: AddonFile) -> str:
    return " ".join([file.name, *file.trigger_words, FAMILY_LABELS.get(file.family, "")]).casefold()


_BLANK: list[QIcon] = []


def _blank_icon() -> QIcon:
    """A transparent square, so names line up whether or not a file has a preview."""
    if not _BLANK:
        pixmap = QPixmap(THUMB, THUMB)
        pixmap.fill(QColor(0, 0, 0, 0))
        _BLANK.append(QIcon(pixmap))
    return _BLANK[0]


def _thumbnail(path: Path) -> QImage:
    """A small copy of a preview picture, read in the background through Sfumato's image reader."""
    try:
        with open_picture(path) as image:
            if image.width * image.height > MAX_PIXELS:
                return QImage()
            image.draft("RGB", (THUMB * 2, THUMB * 2))
            image.thumbnail((THUMB, THUMB))
            square = Image.new("RGBA", (THUMB, THUMB))  # centred in a square: the names line up
            square.paste(image.convert("RGBA"), ((THUMB - image.width) // 2, (THUMB - image.height) // 2))
            return to_qimage(to_array(square))
    except Exception:  # noqa: BLE001 - an unreadable preview is just not shown
        return QImage()
