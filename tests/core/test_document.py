"""CanvasDocument: compositing, strokes, layers, frame and canvas size, each undone exactly."""

import numpy as np
import pytest

from desktop.core.brush import Brush
from desktop.core.document import CanvasDocument, LayerNotEditable, snap_frame
from desktop.core.geometry import Bounds, Extent, Point
from desktop.core.history import History
from desktop.core.layers import ImageLayer, MaskLayer


def solid(h, w, rgba):
    return np.broadcast_to(np.array(rgba, np.uint8), (h, w, 4)).copy()


def state(doc):
    """Everything a user could see or save, to compare before and after undo."""
    return (
        doc.extent, doc.frame, [(type(l), l.name, l.visible, l.opacity, l.locked, l.offset, l.pixels.copy())
                                for l in doc.layers],
        doc.composite().copy(),
    )


def assert_same(a, b):
    assert a[0] == b[0] and a[1] == b[1] and len(a[2]) == len(b[2])
    for x, y in zip(a[2], b[2]):
        assert x[:6] == y[:6]
        np.testing.assert_array_equal(x[6], y[6])
    np.testing.assert_array_equal(a[3], b[3])


def test_new_document_is_empty_with_a_paint_layer_and_a_mask():
    doc = CanvasDocument.new(Extent(128, 96))
    assert [type(l) for l in doc.layers] == [ImageLayer, MaskLayer]
    assert doc.active is doc.layers[0]
    assert doc.frame == Bounds(0, 0, 128, 96)
    assert not doc.composite().any() and not doc.mask().any()
    assert not doc.modified


def test_composite_is_straight_alpha_over_with_opacity_and_visibility():
    doc = CanvasDocument.new(Extent(64, 64))
    doc.add_layer(ImageLayer(solid(64, 64, (200, 0, 0, 255)), "red"), 0)
    blue = doc.add_layer(ImageLayer(solid(32, 32, (0, 0, 200, 255)), "blue", offset=Point(16, 16)))
    doc.set_property(blue, "opacity", 0.5)
    out = doc.composite()
    assert tuple(out[0, 0]) == (200, 0, 0, 255)
    r, g, b, a = out[20, 20]
    assert a == 255 and abs(int(r) - 100) <= 1 and abs(int(b) - 100) <= 1
    doc.set_property(blue, "visible", False)
    assert tuple(doc.composite()[20, 20]) == (200, 0, 0, 255)


def test_composite_only_recomputes_the_touched_rectangle():
    doc = CanvasDocument.new(Extent(256, 256))
    seen = []
    doc.pixels_changed.connect(seen.append)
    stroke = doc.begin_stroke(doc.layers[0], Brush(size=10, colour=(255, 255, 255)))
    box = stroke.to(100, 100)
    stroke.finish()
    assert seen == [box] and box.width < 20 and box.height < 20
    assert tuple(doc.composite()[100, 100]) == (255, 255, 255, 255)


def test_a_stroke_is_one_undo_step_and_undo_restores_every_pixel():
    doc = CanvasDocument.new(Extent(300, 200))
    doc.add_layer(ImageLayer(np.random.default_rng(1).integers(0, 256, (200, 300, 4), dtype=np.uint8), "noise"), 0)
    before = state(doc)
    stroke = doc.begin_stroke(doc.layers[0], Brush(size=25, hardness=0.3, opacity=0.6, colour=(10, 200, 30)))
    for x in range(20, 290, 7):
        stroke.to(x, 100 + 60 * np.sin(x / 30))
    stroke.finish()
    after = state(doc)
    assert doc.history.undo_label == "Brush stroke" and len(doc.history) == 2
    assert doc.undo() == "Brush stroke"
    assert_same(state(doc), before)
    doc.redo()
    assert_same(state(doc), after)


def test_stroke_opacity_does_not_build_up_where_it_crosses_itself():
    doc = CanvasDocument.new(Extent(100, 100))
    layer = doc.layers[0]
    stroke = doc.begin_stroke(layer, Brush(size=20, hardness=1.0, opacity=0.5, colour=(255, 0, 0)))
    for x, y in [(10, 50), (90, 50), (50, 10), (50, 90)]:
        stroke.to(x, y)
    stroke.finish()
    assert layer.pixels[50, 50, 3] == layer.pixels[50, 20, 3] == 128


def test_mask_brush_and_eraser():
    doc = CanvasDocument.new(Extent(100, 100))
    mask = doc.target_mask()
    stroke = doc.begin_stroke(mask, Brush(size=30, hardness=1.0))
    stroke.to(50, 50)
    stroke.finish()
    assert doc.mask()[50, 50] == 255 and doc.mask()[50, 80] == 0
    assert not doc.composite().any(), "masks are never composited into the picture"
    stroke = doc.begin_stroke(mask, Brush(size=10, hardness=1.0, erase=True))
    stroke.to(50, 50)
    stroke.finish()
    assert doc.mask()[50, 50] == 0 and doc.mask()[50, 60] == 255
    doc.undo()
    assert doc.mask()[50, 50] == 255


def test_pen_pressure_thins_the_stroke_and_continues_it_without_gaps():
    doc = CanvasDocument.new(Extent(200, 60))
    stroke = doc.begin_stroke(doc.target_mask(), Brush(size=40, hardness=1.0))
    stroke.to(20, 30, pressure=1.0)
    stroke.to(180, 30, pressure=0.0)
    stroke.finish()
    mask = doc.mask()

    def width(x):
        return int((mask[:, x] > 127).sum())

    assert 38 <= width(20) <= 42, "full pressure: the brush's size"
    assert 3 <= width(180) <= 6, "lightest touch: a tenth of it"
    assert width(60) > width(100) > width(140), "thinner as the pen lifts"
    assert (mask[30, 20:181] == 255).all(), "no gaps where the dabs get small"


def test_hardness_softens_the_edge():
    hard, soft = CanvasDocument.new(Extent(64, 64)), CanvasDocument.new(Extent(64, 64))
    for doc, hardness in ((hard, 1.0), (soft, 0.0)):
        s = doc.begin_stroke(doc.layers[0], Brush(size=40, hardness=hardness, colour=(255, 255, 255)))
        s.to(32, 32)
        s.finish()
    assert hard.layers[0].pixels[32, 45, 3] == 255
    assert 0 < soft.layers[0].pixels[32, 45, 3] < 128


def test_painting_a_locked_or_hidden_layer_is_refused():
    doc = CanvasDocument.new(Extent(64, 64))
    layer = doc.layers[0]
    doc.set_property(layer, "locked", True)
    with pytest.raises(LayerNotEditable, match="locked"):
        doc.begin_stroke(layer, Brush())
    doc.set_property(layer, "locked", False)
    doc.set_property(layer, "visible", False)
    with pytest.raises(LayerNotEditable, match="hidden"):
        doc.begin_stroke(layer, Brush())


def test_a_small_layer_grows_to_take_a_stroke_anywhere_on_the_canvas():
    doc = CanvasDocument.new(Extent(200, 200))
    small = doc.add_layer(ImageLayer(solid(64, 64, (0, 255, 0, 255)), "result", offset=Point(64, 64)))
    before = state(doc)
    stroke = doc.begin_stroke(small, Brush(size=10, hardness=1.0, colour=(255, 0, 0)))
    stroke.to(10, 10)
    stroke.finish()
    assert small.bounds == Bounds(0, 0, 200, 200)
    assert tuple(doc.composite()[10, 10]) == (255, 0, 0, 255)
    doc.undo()
    assert_same(state(doc), before)


def test_layer_operations_undo_and_redo_in_order():
    doc = CanvasDocument.new(Extent(64, 64))
    doc.add_layer(ImageLayer(solid(64, 64, (50, 60, 70, 255)), "base"), 0)
    start = state(doc)
    top = doc.new_layer()
    doc.set_property(top, "name", "  ink   layer ")
    s = doc.begin_stroke(top, Brush(size=8, colour=(255, 255, 255)))
    s.to(30, 30)
    s.finish()
    copy = doc.duplicate_layer(top)
    doc.move_layer(copy, 0)
    doc.set_property(copy, "offset", (5, 7))
    doc.set_property(top, "opacity", 0.25)
    doc.new_layer("mask")
    doc.remove_layer(doc.layers[1])
    end = state(doc)
    assert top.name == "ink layer" and copy.name == "ink layer copy"
    steps = 0
    while doc.undo():
        steps += 1
    assert steps == 10  # the nine edits above and the layer added before them
    doc.redo()
    assert_same(state(doc), start)
    while doc.redo():
        pass
    assert_same(state(doc), end)


def test_set_property_does_nothing_when_unchanged_and_validates():
    doc = CanvasDocument.new(Extent(64, 64))
    layer = doc.layers[0]
    calls = []
    doc.layers_changed.connect(lambda: calls.append(1))
    doc.set_property(layer, "opacity", 1.0)
    assert calls == [] and len(doc.history) == 0
    doc.set_property(layer, "opacity", 7)
    assert layer.opacity == 1.0
    with pytest.raises(ValueError):
        doc.set_property(layer, "name", "   ")
    with pytest.raises(ValueError):
        doc.set_property(layer, "colour", 3)


def test_merge_down_bakes_opacity_and_undoes():
    doc = CanvasDocument.new(Extent(64, 64))
    base = doc.add_layer(ImageLayer(solid(64, 64, (0, 0, 0, 255)), "base"), 0)
    top = doc.add_layer(ImageLayer(solid(16, 16, (255, 255, 255, 255)), "top", offset=Point(80, 0)), 1)
    doc.set_property(top, "offset", (8, 8))
    doc.set_property(top, "opacity", 0.5)
    seen = doc.composite().copy()
    before = state(doc)
    merged = doc.merge_down(top)
    assert merged is base and top not in doc.layers and base.opacity == 1.0
    np.testing.assert_array_equal(doc.composite(), seen)
    doc.undo()
    assert_same(state(doc), before)
    with pytest.raises(LayerNotEditable):
        doc.merge_down(doc.layers[0])


def test_accepting_a_result_past_the_edge_grows_the_canvas_in_one_undo_step():
    doc = CanvasDocument.new(Extent(128, 128))
    doc.add_layer(ImageLayer(solid(128, 128, (9, 9, 9, 255)), "photo"), 0)
    doc.set_frame(Bounds(-64, 64, 128, 128))
    before = state(doc)
    shifts = []
    doc.extent_changed.connect(lambda extent, shift: shifts.append(shift))
    layer = doc.accept_result(solid(128, 128, (1, 2, 3, 255))[..., :3], doc.frame, "Result")
    assert doc.extent == Extent(192, 192) and shifts == [Point(64, 0)]
    assert doc.frame == Bounds(0, 64, 128, 128) and layer.offset == Point(0, 64)
    assert tuple(doc.composite()[0, 100]) == (9, 9, 9, 255), "the old picture moved right by 64"
    assert tuple(doc.composite()[100, 10]) == (1, 2, 3, 255)
    assert doc.undo() == "Accept result"
    assert_same(state(doc), before)


def test_resize_canvas_keeps_layer_pixels_past_the_edge():
    doc = CanvasDocument.new(Extent(100, 100))
    doc.add_layer(ImageLayer(solid(100, 100, (5, 5, 5, 255)), "p"), 0)
    doc.resize_canvas(-20, 0, 0, 0)
    assert doc.extent == Extent(80, 100) and doc.layers[0].offset == Point(-20, 0)
    doc.resize_canvas(20, 0, 0, 0)
    assert tuple(doc.composite()[0, 0]) == (5, 5, 5, 255)
    with pytest.raises(ValueError):
        doc.resize_canvas(-100, 0, 0, 0)


def test_a_canvas_grown_by_an_odd_amount_keeps_the_frame_over_the_same_pixels_in_one_undo_step():
    doc = CanvasDocument.new(Extent(512, 512))
    doc.add_layer(ImageLayer(solid(512, 512, (9, 9, 9, 255)), "p"), 0)
    frame = doc.frame
    doc.resize_canvas(50, 13, 50, 13)
    assert doc.extent == Extent(612, 538) and doc.layers[0].offset == Point(50, 13)
    assert doc.frame == Bounds(50, 13, 512, 512), "still the whole picture, no empty strip snapped into it"
    assert doc.history.undo_label == "Resize canvas"
    doc.undo()
    assert doc.extent == Extent(512, 512) and doc.layers[0].offset == Point(0, 0) and doc.frame == frame
    doc.redo()
    assert doc.frame == Bounds(50, 13, 512, 512) and doc.layers[0].offset == Point(50, 13)


def test_the_frame_covers_a_picture_whose_size_is_not_a_multiple_of_8():
    doc = CanvasDocument.from_image(solid(300, 400, (1, 2, 3, 255)), "photo")
    assert doc.frame == Bounds(0, 0, 400, 300), "the bottom rows are in the frame"
    doc.resize_canvas(0, 0, 3, 5)
    doc.set_frame(Bounds(0, 0, 403, 305))  # the whole grown canvas
    assert doc.frame == Bounds(0, 0, 403, 305)


def test_a_dragged_frame_edge_lands_on_the_grid_or_the_picture_edge():
    picture = Extent(400, 300)
    # Dragging the bottom edge near the picture's edge reaches it; farther in, it lands on the grid.
    assert snap_frame(0, 0, 400, 301.5, picture, "b") == Bounds(0, 0, 400, 300)
    assert snap_frame(0, 0, 400, 298.5, picture, "b") == Bounds(0, 0, 400, 300)
    assert snap_frame(0, 0, 400, 290, picture, "b") == Bounds(0, 0, 400, 288)
    # The left edge of a frame whose right edge is the picture's stays on the grid; the right one stays put.
    assert snap_frame(13, 0, 400, 300, picture, "l") == Bounds(16, 0, 384, 300)
    # A moved frame keeps its size and lands with its start on the grid or its end on the picture's edge.
    assert snap_frame(0, 5, 400, 305, picture, "move") == Bounds(0, 8, 400, 300)
    assert snap_frame(0, -3, 128, 125, picture, "move") == Bounds(0, 0, 128, 128)
    assert snap_frame(270, 171, 398, 299, picture, "move") == Bounds(272, 172, 128, 128)
    # Size stays 64..4096.
    assert snap_frame(0, 0, 30, 5000, picture, "rb") == Bounds(0, 0, 64, 4096)


def test_any_frame_from_64_to_4096_pixels_is_accepted():
    doc = CanvasDocument.new(Extent(100, 100))
    doc.set_frame(Bounds(3, -5, 97, 65))
    assert doc.frame == Bounds(3, -5, 97, 65)
    with pytest.raises(ValueError):
        doc.set_frame(Bounds(0, 0, 32, 64))
    with pytest.raises(ValueError):
        doc.set_frame(Bounds(0, 0, 64, 4097))
    doc.undo()
    assert doc.frame == Bounds(0, 0, 100, 100)


def test_history_is_bounded_by_memory_and_a_new_edit_clears_redo():
    doc = CanvasDocument(Extent(256, 256), max_history_bytes=1_700_000)
    doc.add_layer(ImageLayer.blank(Extent(256, 256), "a"))
    for i in range(12):
        s = doc.begin_stroke(doc.layers[0], Brush(size=60, colour=(i, i, i)))
        s.to(128, 128)
        s.finish()
    assert doc.history.nbytes <= 1_700_000 and len(doc.history) == 3  # 512 KiB a stroke
    doc.undo()
    assert doc.history.redo_label
    s = doc.begin_stroke(doc.layers[0], Brush())
    s.to(5, 5)
    s.finish()
    assert doc.history.redo_label is None


def test_modified_follows_undo_back_to_the_saved_state():
    doc = CanvasDocument.new(Extent(64, 64))
    assert not doc.modified
    doc.new_layer()
    assert doc.modified
    doc.history.mark_clean()
    assert not doc.modified
    doc.undo()
    assert doc.modified
    doc.redo()
    assert not doc.modified


def test_snapshot_is_a_still_picture_while_painting_goes_on():
    doc = CanvasDocument.new(Extent(64, 64))
    s = doc.begin_stroke(doc.layers[0], Brush(size=10, colour=(255, 0, 0)))
    s.to(10, 10)
    s.finish()
    snap = doc.snapshot()
    frozen = snap.layers[0].pixels.copy()
    s = doc.begin_stroke(doc.layers[0], Brush(size=10, colour=(0, 255, 0)))
    s.to(40, 40)
    s.finish()
    doc.undo()
    doc.undo()
    np.testing.assert_array_equal(snap.layers[0].pixels, frozen)
    again = CanvasDocument.from_snapshot(snap)
    np.testing.assert_array_equal(again.composite(), snap.composite())
    assert [l.name for l in again.layers] == ["Layer 1", "Mask"] and again.active is again.layers[0]


def test_undo_after_a_snapshot_between_strokes_restores_exactly():
    doc = CanvasDocument.new(Extent(64, 64))
    base = doc.add_layer(ImageLayer(solid(64, 64, (0, 0, 0, 255)), "b"), 0)
    top = doc.add_layer(ImageLayer(solid(64, 64, (0, 0, 0, 0)), "t"), 1)
    doc.merge_down(top)
    merged_state = state(doc)
    s = doc.begin_stroke(base, Brush(size=10, colour=(255, 255, 255)))
    s.to(20, 20)
    s.finish()
    doc.snapshot()
    s = doc.begin_stroke(base, Brush(size=10, colour=(255, 0, 255)))
    s.to(40, 40)
    s.finish()
    for _ in range(3):
        doc.undo()
    doc.redo()
    assert_same(state(doc), merged_state)


def test_history_alone_starts_clean():
    history = History()
    assert not history.modified and history.undo_label is None and history.nbytes == 0


def test_dragging_a_layer_is_one_undo_step():
    doc = CanvasDocument.new(Extent(64, 64))
    layer = doc.add_layer(ImageLayer(solid(8, 8, (255, 0, 0, 255)), "dot"))
    move = doc.begin_move(layer)
    for d in range(1, 20):
        move.to(d, d // 2)
    move.finish()
    assert layer.offset == Point(19, 9) and tuple(doc.composite()[9, 19]) == (255, 0, 0, 255)
    assert doc.undo() == "Move layer" and layer.offset == Point(0, 0)
    assert not doc.composite()[9, 19].any()
    doc.set_property(layer, "locked", True)
    with pytest.raises(LayerNotEditable):
        doc.begin_move(layer)


def test_undoing_past_trimmed_steps_never_claims_the_saved_state():
    doc = CanvasDocument.new(Extent(256, 256))
    doc.history.max_bytes = 600_000
    doc.history.mark_clean()
    saved = doc.composite().copy()
    for i in range(6):
        s = doc.begin_stroke(doc.layers[0], Brush(size=60, colour=(i, 0, 0)))
        s.to(64 + 20 * i, 64)
        s.finish()
    while doc.undo():
        pass
    assert not np.array_equal(doc.composite(), saved) and doc.modified


def test_a_saved_step_that_trimming_dropped_is_still_recognised():
    doc = CanvasDocument.new(Extent(256, 256))
    doc.history.max_bytes = 3 * 128 * 128 * 4 * 2  # three one-tile strokes

    def stroke(x, y):
        s = doc.begin_stroke(doc.layers[0], Brush(size=20, colour=(x % 256, 0, 0)))
        s.to(x, y)
        s.finish()

    stroke(30, 30)
    doc.history.mark_clean()  # saved after the first stroke
    for x in (60, 90, 100):
        stroke(x, 30)
    assert len(doc.history) == 3, "the first stroke was dropped"
    while doc.undo():
        pass
    assert not doc.modified, "back at the saved picture"


def test_an_undo_in_the_middle_of_a_stroke_finishes_it_first():
    doc = CanvasDocument.new(Extent(128, 128))
    before = state(doc)
    first = doc.begin_stroke(doc.layers[0], Brush(size=10, colour=(255, 0, 0)))
    first.to(20, 20)
    first.finish()
    second = doc.begin_stroke(doc.layers[0], Brush(size=10, colour=(0, 255, 0)))
    second.to(20, 20)
    second.to(60, 20)
    assert doc.undo() == "Brush stroke"  # the green stroke, committed then undone
    second.to(100, 100)  # the rest of the drag changes nothing
    second.finish()
    assert tuple(doc.composite()[20, 20]) == (255, 0, 0, 255) and not doc.composite()[100, 100].any()
    doc.undo()
    assert_same(state(doc), before)


def test_accepting_a_result_while_a_layer_is_dragged_keeps_undo_exact():
    doc = CanvasDocument.new(Extent(64, 64))
    layer = doc.add_layer(ImageLayer(solid(8, 8, (255, 0, 0, 255)), "dot"))
    before = state(doc)
    move = doc.begin_move(layer)
    move.to(10, 0)
    doc.accept_result(solid(64, 64, (0, 0, 255, 255))[..., :3], Bounds(-64, 0, 64, 64), "left")
    move.to(30, 30)  # the drag goes on, but the move was committed before the result
    move.finish()
    assert layer.offset == Point(74, 0) and doc.extent == Extent(128, 64)
    assert doc.undo() == "Accept result" and layer.offset == Point(10, 0)
    assert doc.undo() == "Move layer"
    assert_same(state(doc), before)


def test_painting_a_layer_far_outside_the_canvas_is_refused_not_allocated():
    doc = CanvasDocument.new(Extent(256, 256))
    far = doc.add_layer(ImageLayer(solid(64, 64, (1, 1, 1, 255)), "far", offset=Point(12000, 12000)))
    with pytest.raises(LayerNotEditable, match="far outside"):
        doc.begin_stroke(far, Brush())
    assert far.bounds.extent == Extent(64, 64)


def test_opening_many_layers_composites_once():
    import time

    from desktop.core.document import DocumentSnapshot, LayerData

    pixels = np.full((512, 512, 4), 255, np.uint8)
    snapshot = DocumentSnapshot(Extent(512, 512), Bounds(0, 0, 512, 512),
                                tuple(LayerData("image", f"l{i}", pixels) for i in range(100)), 3)
    started = time.perf_counter()
    doc = CanvasDocument.from_snapshot(snapshot)
    assert time.perf_counter() - started < 10  # quadratic recompositing took minutes
    assert len(doc.layers) == 100 and doc.active is doc.layers[3] and doc.composite()[0, 0, 3] == 255


def test_undoing_a_new_layer_or_an_accepted_result_chooses_the_layer_below_not_the_mask():
    doc = CanvasDocument.from_image(solid(64, 64, (9, 9, 9, 255))[..., :3], "photo")
    photo = doc.active
    doc.accept_result(solid(64, 64, (0, 0, 255, 255))[..., :3], Bounds(0, 0, 64, 64), "result")
    assert doc.undo() == "Accept result" and doc.active is photo
    doc.new_layer("image")
    doc.undo()
    assert doc.active is photo
    painted = doc.new_layer("image")
    doc.remove_layer(painted)
    assert doc.active is photo, "deleting a layer chooses the one below it"
    doc.undo()
    assert doc.active is photo, "undo leaves the chosen layer chosen"


def test_accepting_an_upscale_scales_every_layer_and_adds_the_picture_on_top_in_one_undo_step():
    doc = CanvasDocument.new(Extent(100, 60))
    doc.add_layer(ImageLayer(solid(60, 100, (9, 9, 9, 255)), "photo"), 0)
    sticker = doc.add_layer(ImageLayer(solid(10, 20, (200, 0, 0, 255)), "sticker"), 2)
    doc.set_property(sticker, "offset", Point(30, 20))
    doc.set_property(sticker, "visible", False)
    mask = doc.masks()[0]
    mask.writable()[10:20, 10:40] = 255
    frame = doc.frame
    before = state(doc)
    upscaled = solid(120, 200, (1, 2, 3, 255))[..., :3]
    layer = doc.accept_upscale(upscaled, "Upscaled x2")
    assert doc.extent == Extent(200, 120) and layer.bounds == doc.bounds and doc.active is layer
    assert doc.index(layer) == len(doc.layers) - 2, "above the image layers, under the mask"
    assert sticker.bounds == Bounds(60, 40, 40, 20) and not sticker.visible, "hidden layers scale too, in place"
    assert mask.bounds == doc.bounds and mask.pixels[30, 50] == 255 and mask.pixels[50, 50] == 0
    assert tuple(doc.composite()[5, 5]) == (1, 2, 3, 255)
    assert doc.frame == frame, "the frame keeps the model's size"
    assert doc.undo() == "Upscale"
    assert_same(state(doc), before)
    doc.redo()
    assert doc.extent == Extent(200, 120) and tuple(doc.composite()[5, 5]) == (1, 2, 3, 255)


def test_an_upscale_past_the_largest_canvas_is_refused_and_changes_nothing():
    doc = CanvasDocument.new(Extent(64, 64))
    before = state(doc)
    with pytest.raises(ValueError, match="16384"):
        doc.accept_upscale(np.zeros((8, 20000, 3), np.uint8), "Upscaled")
    assert_same(state(doc), before)
