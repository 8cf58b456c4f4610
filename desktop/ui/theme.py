"""Light, dark or follow-the-system colours on the Fusion style.

`apply_theme(app, "system" | "light" | "dark")` can be called at start-up and
again whenever the setting changes; calling it twice is harmless. In "system"
mode the palette follows the OS colour scheme, also when it changes while
Sfumato runs (one `colorSchemeChanged` connection per application).

"light" is Fusion's standard palette. "dark" is our own palette: text,
placeholder, link and tooltip text reach WCAG AA contrast (4.5:1) on their
backgrounds, disabled text is visibly dimmer but still readable (about 3.5:1),
and the highlight is the same blue as in light mode (white on it: 3.7:1 in
both) so a selection looks the same in either.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QColor, QPalette, QPen
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QToolTip

THEMES = ("system", "light", "dark")

_FOLLOWER_NAME = "sfumatoThemeFollower"

# Same blue as Fusion's light palette (#308cc6), so a selection looks alike in both modes.
_HIGHLIGHT = "#308cc6"

_Role = QPalette.ColorRole
_Group = QPalette.ColorGroup

_DARK_ACTIVE = {
    _Role.Window: "#2d2d2d",
    _Role.WindowText: "#e8e8e8",
    _Role.Base: "#1f1f1f",
    _Role.AlternateBase: "#282828",
    _Role.Text: "#e8e8e8",
    _Role.PlaceholderText: "#9a9a9a",
    _Role.Button: "#383838",
    _Role.ButtonText: "#e8e8e8",
    _Role.BrightText: "#ff6b6b",
    _Role.Light: "#505050",
    _Role.Midlight: "#424242",
    _Role.Mid: "#262626",
    _Role.Dark: "#1a1a1a",
    _Role.Shadow: "#0a0a0a",
    _Role.Highlight: _HIGHLIGHT,
    _Role.HighlightedText: "#ffffff",
    _Role.Accent: _HIGHLIGHT,
    _Role.Link: "#6cb6f0",
    _Role.LinkVisited: "#b89cf0",
    _Role.ToolTipBase: "#3f3f3f",
    _Role.ToolTipText: "#f2f2f2",
}

_DARK_DISABLED = {
    _Role.WindowText: "#858585",
    _Role.Text: "#858585",
    _Role.ButtonText: "#858585",
    _Role.PlaceholderText: "#5f5f5f",
    _Role.Base: "#262626",
    _Role.Button: "#323232",
    _Role.Highlight: "#4f4f4f",
    _Role.HighlightedText: "#a8a8a8",
    _Role.Accent: "#4f4f4f",
    _Role.Link: "#5c7d96",
    _Role.LinkVisited: "#7d6f96",
}


def dark_palette() -> QPalette:
    palette = QPalette()
    for role, color in _DARK_ACTIVE.items():
        palette.setColor(role, QColor(color))  # all groups
    for role, color in _DARK_DISABLED.items():
        palette.setColor(_Group.Disabled, role, QColor(color))
    return palette


def light_palette() -> QPalette:
    from PySide6.QtWidgets import QStyleFactory

    style = QStyleFactory.create("Fusion")
    try:
        return QPalette(style.standardPalette())
    finally:
        style.deleteLater()


def contrast_ratio(a: QColor, b: QColor) -> float:
    """WCAG 2 contrast ratio between two opaque colours (1 to 21)."""

    def luminance(color: QColor) -> float:
        def channel(value: float) -> float:
            return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF()) + 0.0722 * channel(color.blueF())

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def is_dark(palette: QPalette) -> bool:
    return palette.color(_Role.Window).lightness() < palette.color(_Role.WindowText).lightness()


class _ThemeFollower(QObject):
    """Remembers the chosen theme and re-applies the palette when the OS colour scheme changes."""

    def __init__(self, app: QApplication):
        super().__init__(app)
        self.setObjectName(_FOLLOWER_NAME)
        self.theme = "system"
        app.styleHints().colorSchemeChanged.connect(self._scheme_changed)

    @Slot(Qt.ColorScheme)
    def _scheme_changed(self, scheme: Qt.ColorScheme) -> None:
        self.refresh(scheme)

    def refresh(self, scheme: Qt.ColorScheme | None = None) -> None:
        app = QApplication.instance()
        if app is None:
            return
        if scheme is None:
            scheme = app.styleHints().colorScheme()
        dark = self.theme == "dark" or (self.theme == "system" and scheme == Qt.ColorScheme.Dark)
        palette = dark_palette() if dark else light_palette()
        if app.palette() != palette:
            app.setPalette(palette)
            _restyle(app)
        QToolTip.setPalette(palette)


def _restyle(app: QApplication) -> None:
    """Style sheets read palette(...) colours once: read them again, or a banner stays light in the dark."""
    for widget in app.allWidgets():
        sheet = widget.styleSheet()
        if sheet:
            widget.setStyleSheet(sheet)


def _follower(app: QApplication) -> _ThemeFollower:
    follower = app.findChild(_ThemeFollower, _FOLLOWER_NAME)
    return follower if follower is not None else _ThemeFollower(app)


def _request_color_scheme(app: QApplication, theme: str) -> None:
    """Tell the platform (Qt 6.8+) so native parts such as the Windows title bar match."""
    hints = app.styleHints()
    if not hasattr(hints, "setColorScheme"):
        return
    wanted = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(theme)
    if wanted is None:
        hints.unsetColorScheme()
    elif hints.colorScheme() != wanted:
        hints.setColorScheme(wanted)


def apply_theme(app: QApplication, theme: str) -> None:
    """Fusion style with a light, dark or system-following palette."""
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}; choose one of {', '.join(THEMES)}")
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")
    follower = _follower(app)
    follower.theme = theme
    _request_color_scheme(app, theme)
    follower.refresh()


class CheckEdgeDelegate(QStyledItemDelegate):
    """Item check boxes with a visible edge on a dark palette.

    Fusion outlines a check box in a shade of the window colour and fills it
    with the base colour, which is also a list's background: on a dark
    palette an unticked box (a hidden layer) all but vanished.
    """

    def paint(self, painter, option, index) -> None:
        super().paint(painter, option, index)
        if not (index.flags() & Qt.ItemFlag.ItemIsUserCheckable) or not is_dark(option.palette):
            return
        item = QStyleOptionViewItem(option)
        self.initStyleOption(item, index)
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        box = style.subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator, item, widget)
        painter.save()
        painter.setPen(QPen(option.palette.color(_Role.PlaceholderText), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(box.adjusted(0, 0, -1, -1))
        painter.restore()


# A checked toggle button (Lock, Favourite) filled with the selection colour: Fusion's own checked look is a
# shade darker than the button, too close to tell apart, above all in the dark.
CHECKED_BUTTON_STYLE = (
    "QToolButton:checked, QPushButton:checked { background: palette(highlight); color: palette(highlighted-text);"
    " border: 1px solid palette(dark); border-radius: 3px; }"
)
