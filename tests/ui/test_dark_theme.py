"""The dark theme reaches every part: banners that were styled in light colours, and check boxes in lists."""

import numpy as np
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem

from desktop.core.document import CanvasDocument
from desktop.ui import theme
from desktop.ui.canvas.layers_panel import LayersPanel


def background(widget) -> QColor:
    image = widget.grab().toImage()
    return image.pixelColor(3, image.height() // 2)


def test_switching_to_dark_turns_the_demo_banner_and_the_mode_hint_dark(make_window, fake_backend, app_look, qtbot):
    theme.apply_theme(app_look, "light")
    window = make_window()
    window.demo_banner.show()  # as with the demo model (which takes a while to build)
    assert background(window.demo_banner).lightness() > 200
    theme.apply_theme(app_look, "dark")  # as File > Settings does
    for label in (window.demo_banner, window.panel.mode_label):
        assert background(label).lightness() < 80, label.objectName()
        assert label.palette().color(QPalette.ColorRole.WindowText).lightness() > 200


def test_a_hidden_layers_check_box_stands_out_from_the_dark_list(app_look, qtbot):
    theme.apply_theme(app_look, "dark")
    doc = CanvasDocument.from_image(np.zeros((64, 64, 3), np.uint8), "photo")
    panel = LayersPanel()
    qtbot.addWidget(panel)
    panel.set_document(doc)
    doc.set_property(doc.layers[1], "visible", False)  # the mask, shown in row 0
    panel.resize(280, 240)
    panel.show()
    qtbot.waitExposed(panel)
    view = panel.list
    option = QStyleOptionViewItem()
    view.initViewItemOption(option)
    index = panel.model.index(0)
    option.rect = view.visualRect(index)
    view.itemDelegate().initStyleOption(option, index)
    box = view.style().subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator, option, view)
    image = view.viewport().grab().toImage()
    base = app_look.palette().color(QPalette.ColorRole.Base)
    edge = max(theme.contrast_ratio(image.pixelColor(x, y), base)
               for x in range(box.left(), box.right() + 1) for y in range(box.top(), box.bottom() + 1))
    assert edge >= 3, f"the empty box's edge has a contrast of {edge:.2f} with the list"
