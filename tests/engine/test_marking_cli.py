"""The AI mark on what the CLI saves: `sfumato generate` (txt2img, inpaint) and `sfumato upscale` pictures carry the
IPTC digital source type in XMP and a signed C2PA manifest, and neither when File > Settings turned the mark off."""

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from desktop.__main__ import main as sfumato
from desktop.core import credentials, marking, settings

from tests.core.test_marking import independent_type


def run(capsys, *args):
    code = sfumato(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.splitlines()


def generate(capsys, tmp_path, tiny_models, *args):
    return run(capsys, "generate", "--model", str(tiny_models["sd1"].folder), "--prompt", "a fox", "--steps", "1",
               "--width", "64", "--height", "64", "--out", str(tmp_path / "out"), *args)


def test_txt2img_and_inpaint_say_what_made_them(capsys, tmp_path, tiny_models):
    made = generate(capsys, tmp_path, tiny_models)[0]
    assert marking.read_source_type(made) == independent_type(made) == marking.TRAINED
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    inpainted = generate(capsys, tmp_path, tiny_models, "--mode", "inpaint", "--init", str(tmp_path / "photo.png"),
                         "--mask", str(tmp_path / "mask.png"), "--steps", "2")[0]
    assert marking.read_source_type(inpainted) == independent_type(inpainted) == marking.COMPOSITE
    found = credentials.read(inpainted)  # content credentials too: opened the init, then edited
    assert (found.state, found.actions, found.source_type) == (
        credentials.UNTRUSTED, ("c2pa.opened", "c2pa.edited"), marking.COMPOSITE)


def test_with_the_setting_off_the_cli_writes_no_mark(capsys, tmp_path, tiny_models):
    settings.save(settings.Settings(mark_ai=False))
    made = generate(capsys, tmp_path, tiny_models)[0]
    assert marking.read_source_type(made) is None and b"xmpmeta" not in open(made, "rb").read()
    assert credentials.read(made).state == credentials.NONE  # the manifest says "generated" too: none either


@pytest.mark.parametrize("source, expected", [("generated", marking.TRAINED), ("photo", marking.COMPOSITE),
                                              ("inpainted", marking.COMPOSITE)])
def test_a_plain_upscale_keeps_its_sources_type(capsys, tmp_path, source, expected):
    info = PngImagePlugin.PngInfo()
    if source != "photo":
        info.add_text("parameters", "a fox\nSteps: 2, Seed: 3, Size: 24x20")
    if source == "inpainted":
        info.add_itxt(marking.XMP_KEY, marking.xmp_packet(marking.COMPOSITE))
    Image.fromarray(np.full((20, 24, 3), 120, np.uint8)).save(tmp_path / "in.png", pnginfo=info)
    upscaled = run(capsys, "upscale", "--input", str(tmp_path / "in.png"), "--scale", "2", "--device", "cpu",
                   "--out", str(tmp_path / "up"))[0]
    assert marking.read_source_type(upscaled) == independent_type(upscaled) == expected
    found = credentials.read(upscaled)
    assert (found.state, found.actions, found.source_type) == (
        credentials.UNTRUSTED, ("c2pa.opened", "c2pa.edited"), expected)
