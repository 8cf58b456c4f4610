"""Canvas speed on a 4096x4096 document with 8 full-size layers (the issue's "must stay fluid" case).

Figures, each against the naive alternative measured in the same run:
- a brush segment (64 px brush dragged 40 px): dabs, the layer write and the
  recomposite of the touched rectangle, vs recompositing the whole document;
- the composite update of a 256x256 rectangle, vs the whole document;
- the same segment through the real CanvasView, including the QImage update
  and the repaint of the touched screen area, vs repainting the whole view;
- a whole-view repaint at "fit" zoom on the large document, vs on a 512x512 one;
- undo of a long stroke, vs recompositing the whole document.
"""

from __future__ import annotations

import numpy as np

from desktop.core.brush import Brush
from desktop.core.document import CanvasDocument
from desktop.core.geometry import Bounds, Extent
from desktop.core.layers import ImageLayer, composite

from .common import Figure, best_of

SIZE = 4096
LAYERS = 8


def big_document() -> CanvasDocument:
    rng = np.random.default_rng(0)
    doc = CanvasDocument(Extent(SIZE, SIZE))
    tile = rng.integers(0, 256, (512, 512, 4), dtype=np.uint8)
    for i in range(LAYERS):
        pixels = np.tile(np.roll(tile, i * 37, axis=1), (SIZE // 512, SIZE // 512, 1))
        pixels[..., 3] = 255 if i == 0 else 160  # an opaque bottom and translucent layers above
        doc.add_layer(ImageLayer(pixels, f"layer {i}"))
    doc.history.mark_clean()
    return doc


def run() -> list[Figure]:
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication

    from desktop.ui.canvas.tools import Tool, ToolState
    from desktop.ui.canvas.view import CanvasView

    app = QApplication.instance() or QApplication([])
    doc = big_document()
    full = best_of(lambda: composite(doc.layers, doc.bounds), repeat=2)
    layer = doc.layers[3]
    brush = Brush(size=64, hardness=0.7, colour=(200, 30, 30))

    def segments(session, count: int, y: float = 1000.0):
        x = 500.0
        session.to(x, y)
        for _ in range(count):
            x += 40
            session.to(x, y)

    session = doc.begin_stroke(layer, brush)
    per_segment = best_of(lambda: segments(session, 20), repeat=3) / 21
    session.finish()

    box = Bounds(2000, 2000, 256, 256)
    rect_update = best_of(lambda: doc._pixels_changed(layer, box), repeat=5, number=5)

    tools = ToolState()
    tools.set_tool(Tool.BRUSH)
    view = CanvasView(tools)
    view.resize(1200, 900)
    view.set_document(doc)
    view.show()
    app.processEvents()
    view.set_view(1.0, QPointF(0, 0))  # 100%, the picture's corner at the top left

    def view_segments():
        s = doc.begin_stroke(layer, brush)
        x = 300.0
        s.to(x, 300)
        for _ in range(10):
            x += 40
            s.to(x, 300)
            view.repaint(view.widget_rect(Bounds(int(x) - 80, 220, 160, 160)))
        s.finish()

    view_segment = best_of(view_segments, repeat=3) / 10
    view_full_100 = best_of(view.repaint, repeat=3)
    view.fit()
    view_fit = best_of(view.repaint, repeat=3)

    small_doc = CanvasDocument.from_image(np.zeros((512, 512, 3), np.uint8), "small")
    view.set_document(small_doc)
    view.fit()
    small_fit = best_of(view.repaint, repeat=5)
    view.set_document(doc)

    long_stroke = doc.begin_stroke(layer, Brush(size=120))
    for i in range(60):
        long_stroke.to(200 + i * 60, 200 + i * 55)
    long_stroke.finish()

    def undo_redo():
        doc.undo()
        doc.redo()

    undo = best_of(undo_redo, repeat=3) / 2
    view.close()
    name = f"{SIZE}x{SIZE}, {LAYERS} layers"
    whole = f"full recomposite ({name})"
    return [
        Figure(f"brush segment, 64 px brush, 40 px ({name})", per_segment * 1000, "ms", whole, full * 1000),
        Figure("composite update of a 256x256 rectangle", rect_update * 1000, "ms", whole, full * 1000),
        Figure("brush segment through the view (update + repaint)", view_segment * 1000, "ms",
               "whole-view repaint at 100%", view_full_100 * 1000),
        Figure(f"whole-view repaint at fit zoom ({name})", view_fit * 1000, "ms",
               "same on a 512x512 picture", small_fit * 1000),
        Figure("undo of a 3600 px stroke (120 px brush)", undo * 1000, "ms", whole, full * 1000),
    ]
