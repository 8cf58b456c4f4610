"""`sfumato upscale`: a picture or a folder, pictures already done skipped, the source's parameters kept."""

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from desktop.__main__ import main as sfumato
from desktop.core.infotext import parse_infotext

SOURCE = "a lighthouse\nNegative prompt: fog\nSteps: 20, Sampler: Euler a, Seed: 3, Size: 40x30, Model: tiny"


def run(capsys, *args):
    code = sfumato(["upscale", *args, "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.fixture
def pictures(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", SOURCE)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / "a.png", pnginfo=info)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / "b.jpg")
    (folder / "notes.txt").write_text("not a picture")
    return folder


def test_a_folder_is_upscaled_and_a_second_run_skips_what_is_done(capsys, tmp_path, pictures):
    out = tmp_path / "out"
    code, paths, err = run(capsys, "--input", str(pictures), "--scale", "1.5", "--out", str(out))
    assert code == 0, err
    assert paths == [str(out / "a-x1.5.png"), str(out / "b-x1.5.png")]
    assert "[1/2] a.png" in err and "[2/2] b.jpg" in err and "step 1/1" in err
    a = Image.open(out / "a-x1.5.png")
    assert a.size == (60, 45) and Image.open(out / "b-x1.5.png").size == (36, 30)
    info = parse_infotext(a.text["parameters"])
    assert info.prompt == "a lighthouse" and info.params["Seed"] == "3"
    assert info.params["Postprocess upscale by"] == "1.5"
    assert info.params["Postprocess upscaler"] == "Demo upscaler (random weights)"

    (out / "b-x1.5.png").unlink()
    code, paths, err = run(capsys, "--input", str(pictures), "--scale", "1.5", "--out", str(out))
    assert code == 0, err
    assert paths == [str(out / "b-x1.5.png")]
    assert "a.png: already done (a-x1.5.png)" in err


def test_one_picture_to_a_size(capsys, tmp_path, pictures):
    code, paths, err = run(capsys, "--input", str(pictures / "b.jpg"), "--size", "100x50", "--out", str(tmp_path))
    assert code == 0, err
    assert Image.open(paths[0]).size == (100, 50) and paths[0].endswith("b-100x50.png")
    assert "Postprocess upscale by: 4.167" in Image.open(paths[0]).text["parameters"]


@pytest.mark.parametrize("args, message", [
    (["--scale", "0"], "--scale: the scale must be more than 0"),
    (["--size", "10by10"], "expected WIDTHxHEIGHT"),
    (["--upscaler", " "], "--upscaler: name an upscaler"),
])
def test_bad_options_are_one_line(capsys, pictures, args, message):
    code, paths, err = run(capsys, "--input", str(pictures), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_missing_input_or_upscaler_is_one_line(capsys, tmp_path, pictures):
    code, _, err = run(capsys, "--input", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err
    code, paths, err = run(capsys, "--input", str(pictures), "--upscaler", "4x-Nothing", "--out", str(tmp_path / "o"))
    assert code == 1 and paths == []
    assert "Could not use the upscaler 4x-Nothing: there is no such file" in err
    assert "Traceback" not in err


def test_a_picture_that_cannot_be_read_does_not_stop_the_others(capsys, tmp_path, pictures):
    (pictures / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    code, paths, err = run(capsys, "--input", str(pictures), "--out", str(tmp_path / "out"))
    assert code == 1
    assert [p.rsplit("/", 1)[1] for p in paths] == ["a-x2.png", "b-x2.png"]
    assert "broken.png" in err and "1 of 3 pictures could not be upscaled" in err


def test_detail_adds_an_img2img_pass_with_its_parameters(capsys, tmp_path, pictures):
    out = tmp_path / "out"
    code, paths, err = run(capsys, "--input", str(pictures / "a.png"), "--scale", "2", "--detail", "0.5",
                           "--model", "demo", "--prompt", "a red boat", "--steps", "4", "--seed", "9",
                           "--out", str(out))
    assert code == 0, err
    assert paths == [str(out / "a-x2-detail.png")]
    picture = Image.open(out / "a-x2-detail.png")
    assert picture.size == (80, 60)
    info = parse_infotext(picture.text["parameters"])
    assert info.prompt == "a red boat"
    assert {key: info.params[key] for key in ("Steps", "Sampler", "Seed", "Size", "Denoising strength",
                                              "Postprocess upscale by")} == {
        "Steps": "4", "Sampler": "Euler a", "Seed": "9", "Size": "80x60", "Denoising strength": "0.5",
        "Postprocess upscale by": "2"}


def test_a_detail_strength_out_of_range_names_the_option(capsys, pictures):
    code, _, err = run(capsys, "--input", str(pictures), "--detail", "1.5", "--prompt", "x")
    assert code == 2
    assert err.startswith("sfumato: --detail:") and "Traceback" not in err and len(err.strip().splitlines()) == 1
