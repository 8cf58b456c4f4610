"""`sfumato generate --control ...`: the parts parsed (Windows paths too), one-line errors, the keys written."""

import argparse

import numpy as np
import pytest
from PIL import Image

from desktop.cli import _control, build_parser, main, request_from_args
from desktop.core.infotext import parse_infotext


def test_a_control_is_parsed_with_its_defaults(tmp_path):
    path = tmp_path / "edges.png"
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(path)
    args = build_parser().parse_args(["--prompt", "x", "--control", f"image={path}",
                                      "--control", f"model=cn, image={path},type=canny,weight=0.5,start=0.1,end=0.9",
                                      "--control", f"image={path},type=depth,preprocessed=1"])
    first, second, third = request_from_args(args).controls
    assert (first.model, first.type, first.weight, first.start, first.end, first.preprocess) == \
        ("demo", "none", 1.0, 0.0, 1.0, False)
    assert first.image.shape == (32, 48, 3)
    assert (second.model, second.type, second.weight, second.start, second.end, second.preprocess) == \
        ("cn", "canny", 0.5, 0.1, 0.9, True)
    assert (third.type, third.preprocess) == ("depth", False)


def test_a_windows_path_keeps_its_drive_and_backslashes():
    spec = _control(r"model=C:\models\ControlNet\control_canny.safetensors,image=C:\x\y.png,type=canny")
    assert spec == {"model": r"C:\models\ControlNet\control_canny.safetensors", "image": r"C:\x\y.png",
                    "type": "canny"}
    assert _control("image=D:\\a=b\\c.png")["image"] == "D:\\a=b\\c.png"  # split at the first '=' only


def test_a_path_with_a_comma_is_one_picture(tmp_path):
    assert _control(r"image=C:\My Pictures, 2024\edges.png,type=canny") == {
        "image": r"C:\My Pictures, 2024\edges.png", "type": "canny"}
    folder = tmp_path / "My Pictures, 2024"
    folder.mkdir()
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(folder / "edges.png")
    assert _control(rf"image={folder / 'edges.png'},type=canny") == {"image": str(folder / "edges.png"),
                                                                     "type": "canny"}
    args = build_parser().parse_args(["--prompt", "x", "--control", f"image={folder / 'edges.png'},type=canny"])
    (control,) = request_from_args(args).controls
    assert (control.type, control.image.shape) == ("canny", (16, 24, 3))


@pytest.mark.parametrize("text, words", [
    ("model=demo", "names no control picture; add image=PATH"),
    ("image=a.png,strength=1", "'strength=1' is not key=value"),
    ("canny,image=a.png", "expected key=value parts separated by commas"),
    ("image=a.png,type=canny,image=b.png", "image is given twice"),
    ("image=a.png,weight=much", "'weight=much': weight must be a number"),
    ("image=a.png,type=pose", "'type=pose': the type must be one of canny, lineart, scribble, depth, none"),
    ("image=a.png,preprocessed=yes", "'preprocessed=yes': preprocessed must be 0 or 1"),
])
def test_a_bad_part_is_named(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=words.replace("(", r"\(")):
        _control(text)


def test_bad_controls_exit_2_with_one_line(capsys, tmp_path):
    assert main(["--prompt", "x", "--control", "image=a.png,weight=much"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--control" in err and "'weight=much'" in err
    path = tmp_path / "c.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    assert main(["--prompt", "x", "--control", f"image={path},weight=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--control: control 1: the weight must be between 0 and 2" in err


def test_the_cli_generates_with_a_control_and_writes_a1111s_keys(capsys, tmp_path, tiny_models):
    path = tmp_path / "c.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(path)
    code = main(["--model", "demo", "--prompt", "x", "--steps", "2", "--width", "64", "--height", "64",
                 "--control", f"image={path},weight=0.8,end=0.5", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err
    params = parse_infotext(Image.open(out.splitlines()[0]).text["parameters"]).params
    assert params["ControlNet 0"].startswith("Module: none, Model: demo [")
    assert params["ControlNet 0"].endswith("Weight: 0.8, Guidance Start: 0, Guidance End: 0.5")
