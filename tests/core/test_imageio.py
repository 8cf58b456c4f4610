import numpy as np
import pytest
from PIL import Image

from desktop.core.imageio import ImageError, load_image, load_mask, output_path, save_png


def test_save_never_overwrites_and_keeps_text(tmp_path):
    target = tmp_path / "day" / "00001-5.png"
    first = save_png(target, np.zeros((8, 8, 3), np.uint8), {"parameters": "one"})
    second = save_png(target, np.full((8, 8, 3), 255, np.uint8), {"parameters": "two"})
    assert first == target and second != target
    assert Image.open(first).text["parameters"] == "one"
    assert Image.open(second).text["parameters"] == "two"
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".tmp")] == []


def test_output_paths_count_up_per_day(tmp_path):
    first = output_path(tmp_path, 42)
    save_png(first, np.zeros((8, 8, 3), np.uint8))
    assert first.name == "00001-42.png"
    assert output_path(tmp_path, 7).name == "00002-7.png"


@pytest.mark.parametrize(
    "mode, expected_channels",
    [("RGB", 3), ("RGBA", 4), ("L", 3), ("CMYK", 3), ("P", 3), ("I;16", 3), ("LA", 4)],
)
def test_every_mode_becomes_8_bit_rgb_or_rgba(tmp_path, mode, expected_channels):
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    Image.new(mode, (5, 4)).save(path)
    array = load_image(path)
    assert array.dtype == np.uint8 and array.shape == (4, 5, expected_channels)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((2, 2), 65535, np.uint16)).save(path)
    assert load_image(path)[0, 0, 0] == 255


def test_bad_files_give_a_sentence(tmp_path):
    (tmp_path / "fake.png").write_text("<html>not an image</html>")
    Image.new("RGB", (64, 64)).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    for name, words in [("fake.png", "not a picture Sfumato can read"), ("cut.png", "damaged"), ("missing.png", "does not exist")]:
        with pytest.raises(ImageError, match=words):
            load_image(tmp_path / name)


def test_mask_uses_brightness_and_alpha(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 255, 255, 255)
    rgba[0, 1] = (255, 255, 255, 0)  # transparent white counts as black
    Image.fromarray(rgba).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png").tolist() == [[255, 0], [0, 0]]


def portrait_photo(path):
    """A phone's portrait photo: stored 40 wide and 20 high with a red top-left corner, EXIF Orientation 6."""
    pixels = np.full((20, 40, 3), 255, np.uint8)
    pixels[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    Image.fromarray(pixels).save(path, format="JPEG", quality=95, exif=exif)
    return path


def test_init_images_and_masks_come_out_upright_by_their_exif_orientation(tmp_path):
    photo = portrait_photo(tmp_path / "phone.jpg")
    image = load_image(photo)
    assert image.shape == (40, 20, 3), "portrait: 20 wide, 40 high"
    assert image[2, 17].tolist()[0] > 200 and image[2, 17].tolist()[1] < 60, "the red corner is now top right"
    assert image[37, 2].min() > 200
    mask = load_mask(photo)
    assert mask.shape == (40, 20) and mask[2, 17] < 120 and mask[37, 2] > 200
