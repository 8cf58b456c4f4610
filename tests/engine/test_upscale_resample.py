"""An upscale to a size other than the model's scale resamples the model's rows with Lanczos band by band as they
are done (upscale.LanczosRows), so a 4096x4096 x2 with an x4 model never holds the 16384x16384 intermediate; the
result is the whole picture's two-pass Lanczos (rows, then width) to within one level, and PIL's own one-call
resize (which orders its passes by size) to within the rounding of the 8-bit picture between the passes."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from desktop.core.postprocess import UpscaleRequest
from desktop.core.progress import TaskState
from desktop.engine import devices, upscale
from desktop.engine.models import ModelManager

from .test_upscale import picture


def whole_lanczos(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return upscale.two_pass(image, size)


@pytest.mark.parametrize("source, size", [
    ((256, 400), (128, 200)),  # x4 -> x2: half
    ((256, 400), (96, 150)),   # x4 -> x1.5: 8/3 source rows per row
    ((256, 400), (512, 800)),  # x4 -> x8: enlarging
    ((201, 333), (77, 127)),   # odd sizes, ratios that are not round
    ((64, 40), (64, 1000)),    # a tall stretch: many bands from few rows
    ((256, 1200), (200, 900)),  # both axes shrink, a slice shorter than it is wide (PIL would swap its passes)
    ((64, 300), (48, 225)),
])
def test_rows_resampled_band_by_band_are_the_whole_pictures_lanczos(source, size):
    image = picture(source[1], source[0])
    rows = upscale.LanczosRows(source, size)
    rng = np.random.default_rng(1)
    top = 0
    while top < source[1]:  # the rows come in chunks of any height, as tile rows finish
        count = int(rng.integers(1, 90))
        rows.add(image[top:top + count], top)
        top += count
    expected = whole_lanczos(image, size)
    difference = np.abs(rows.out.astype(int) - expected)
    assert rows.out.shape == expected.shape
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.01  # rounding of a coefficient, here and there


def test_the_rows_must_come_in_order():
    rows = upscale.LanczosRows((8, 8), (4, 4))
    with pytest.raises(ValueError):
        rows.add(np.zeros((2, 8, 3), np.uint8), 4)


def test_an_upscale_at_another_scale_resamples_as_it_goes_and_never_holds_the_models_whole_output(monkeypatch):
    manager = ModelManager(devices.choose("cpu", "fp32"))
    up = upscale.load("demo", manager, TaskState())
    image = picture(150, 200)
    native = upscale.upscale_image(up, image, TaskState(), 64)  # 600x800, the x4 demo's
    expected = whole_lanczos(native, (400, 300))
    held = []
    monkeypatch.setattr(upscale._Whole, "__init__", lambda self, size: held.append(size) or setattr(
        self, "out", np.empty((size[1], size[0], 3), np.uint8)))
    result = upscale.run(UpscaleRequest(image, 2.0, upscaler="demo"), TaskState(), manager)[0].image
    assert result.shape == (300, 400, 3)
    assert np.abs(result.astype(int) - expected).max() <= 1
    assert held == [], "the x4 output was held whole"


def test_the_two_pass_order_is_pils_lanczos_on_a_photo_like_picture():
    """On a smooth picture (no clipping between the passes) the fixed order is PIL's one-call resize."""
    y, x = np.mgrid[0:300, 0:256]
    smooth = np.dstack([(x % 256), (y * 255 // 299), ((x + y) % 256)]).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(smooth).filter(ImageFilter.GaussianBlur(2)))
    for size in ((200, 225), (512, 600), (77, 127)):
        one_call = np.asarray(Image.fromarray(smooth).resize(size, Image.LANCZOS))
        assert np.abs(upscale.two_pass(smooth, size).astype(int) - one_call).max() <= 2, size
