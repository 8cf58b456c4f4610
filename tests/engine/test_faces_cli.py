"""`sfumato restore --kind face`: the faces of a picture fixed with the demo face restorer (or only those of a
painted --mask), `Face restoration` appended to its parameters, a picture without faces written unchanged with
a sentence saying so, and bad face options refused in one line."""

import numpy as np
from PIL import Image, PngImagePlugin

from desktop.__main__ import main as sfumato
from desktop.core.infotext import parse_infotext
from desktop.engine import tiny_upscaler

from .test_faces import face_picture

SOURCE = "a portrait\nSteps: 20, Sampler: Euler a, Seed: 3, Size: 320x320"


def run(capsys, *args):
    code = sfumato(["restore", *args, "--device", "cpu"])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def portrait(folder, name="p.png", image=None):
    folder.mkdir(exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", SOURCE)
    Image.fromarray(face_picture() if image is None else image).save(folder / name, pnginfo=info)
    return folder / name


def test_the_masked_face_is_fixed_and_the_rest_of_the_picture_kept(capsys, tmp_path):
    source = portrait(tmp_path / "in")
    mask = np.zeros((320, 320), bool)
    mask[110:210, 110:210] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    code, paths, err = run(capsys, "--input", str(source), "--kind", "face", "--mask", str(tmp_path / "mask.png"),
                           "--strength", "0.8", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert paths == [str(tmp_path / "out" / "p-face.png")]
    written = Image.open(paths[0])
    info = parse_infotext(written.text["parameters"])
    assert info.prompt == "a portrait" and info.params["Seed"] == "3"
    assert info.params["Face restoration"] == "Demo face restorer (random weights)"
    changed = np.any(np.asarray(written.convert("RGB")) != face_picture(), axis=2)
    assert changed[mask].any() and not changed[~mask].any()


def test_a_picture_without_faces_is_written_unchanged_with_a_sentence(capsys, tmp_path):
    plain = np.full((96, 128, 3), 128, np.uint8)
    source = portrait(tmp_path / "in", "plain.png", plain)
    code, paths, err = run(capsys, "--input", str(source), "--kind", "face", "--out", str(tmp_path / "out"))
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(paths[0]).convert("RGB")), plain)
    assert "No face was found" in err and "--mask" in err


def test_bad_face_options_are_one_line(capsys, tmp_path):
    source = portrait(tmp_path / "in")
    code, _, err = run(capsys, "--input", str(source), "--kind", "face", "--strength", "1.5")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--strength: the visibility must be between 0 and 1" in err
    code, _, err = run(capsys, "--input", str(source), "--kind", "face", "--model", "none")
    assert code == 2 and "choose a face restorer, the face detailer, or both" in err
    code, _, err = run(capsys, "--input", str(source), "--kind", "denoise", "--mask", str(source))
    assert code == 2 and "--mask and --detailer are for --kind face" in err
    Image.new("L", (10, 10), 255).save(tmp_path / "small-mask.png")
    code, paths, err = run(capsys, "--input", str(source), "--kind", "face", "--mask", str(tmp_path / "small-mask.png"),
                           "--out", str(tmp_path / "out"))
    assert code == 1 and paths == [] and "the mask is 10x10 pixels and the picture 320x320" in err
    Image.new("L", (320, 320)).save(tmp_path / "black.png")
    code, paths, err = run(capsys, "--input", str(source), "--kind", "face", "--mask", str(tmp_path / "black.png"),
                           "--out", str(tmp_path / "out"))
    assert code == 2 and paths == [] and len(err.strip().splitlines()) == 1
    assert err.strip() == "sfumato: --mask: black.png is empty (it has no white part); paint each face white on it"


def test_an_upscaler_is_refused_as_a_face_restorer(capsys, tmp_path):
    source = portrait(tmp_path / "in")
    upscaler = tiny_upscaler.build(tmp_path / "4x-Tiny.safetensors")
    code, paths, err = run(capsys, "--input", str(source), "--kind", "face", "--model", str(upscaler), "--out",
                           str(tmp_path / "out"))
    assert code == 1 and paths == [] and "it is not a face restorer" in err
