"""`sfumato generate --reference ...`: the parts parsed (Windows paths too), one-line errors, the keys written."""

import argparse

import numpy as np
import pytest
from PIL import Image

from desktop.cli import _reference, build_parser, main, request_from_args
from desktop.core.infotext import parse_infotext


def save_picture(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 48, 3), np.uint8)).save(path)
    return path


def test_references_are_parsed_with_their_defaults(tmp_path):
    path = save_picture(tmp_path / "ref.png")
    args = build_parser().parse_args(["--prompt", "x", "--reference", f"image={path}",
                                      "--reference", f"image={path}, weight=0.9,mode=style,adapter=ip-adapter_sd15"])
    first, second = request_from_args(args).references
    assert (first.weight, first.mode, first.adapter) == (0.6, "content", "demo")
    assert first.image.shape == (40, 48, 3)
    assert (second.weight, second.mode, second.adapter) == (0.9, "style", "ip-adapter_sd15")


def test_a_windows_path_keeps_its_drive_its_backslashes_and_its_commas():
    spec = _reference(r"image=C:\Users\me\refs, old\cat.png,weight=0.6,adapter=D:\ComfyUI\models\ipadapter\x.safetensors")
    assert spec == {"image": r"C:\Users\me\refs, old\cat.png", "weight": "0.6",
                    "adapter": r"D:\ComfyUI\models\ipadapter\x.safetensors"}
    assert _reference("image=D:\\a=b\\c.png")["image"] == "D:\\a=b\\c.png"  # split at the first '=' only


def test_a_repeated_key_exits_2_with_one_line(capsys):
    assert main(["--prompt", "x", "--reference", "image=a.png,weight=0.5,image=b.png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reference" in err and "image is given twice" in err


@pytest.mark.parametrize("text, words", [
    ("weight=0.5", "names no reference picture; add image=PATH"),
    ("image=a.png,strength=1", "'strength' is not one of its keys image, weight, mode, adapter"),
    ("style,image=a.png", "expected key=value parts separated by commas"),
    ("image=a.png,weight=much", "the weight must be a number, got 'much'"),
    ("image=a.png,mode=stlye", "the mode must be content or style, got 'stlye'"),
    ("image=a.png,image=b.png", "image is given twice"),
])
def test_a_bad_part_is_named(text, words):
    with pytest.raises(argparse.ArgumentTypeError, match=words):
        _reference(text)


def test_bad_references_exit_2_with_one_line(capsys, tmp_path):
    assert main(["--prompt", "x", "--reference", "image=a.png,mode=stlye"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reference" in err and "the mode must be content or style" in err
    path = save_picture(tmp_path / "r.png")
    assert main(["--prompt", "x", "--reference", f"image={path},weight=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reference: reference 1: the weight must be between 0 and 2" in err
    assert main(["--prompt", "x", "--reference", f"image={tmp_path / 'missing.png'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.png does not exist" in err


def test_the_cli_generates_with_references_and_writes_their_keys(capsys, tmp_path, tiny_models):
    path = save_picture(tmp_path / "r.png")
    code = main(["--model", str(tiny_models["sd1"].folder), "--prompt", "x", "--steps", "2", "--width", "64",
                 "--height", "64", "--reference", f"image={path},weight=0.8", "--reference",
                 f"image={path},weight=0.5,mode=style,adapter=demo", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 0, err
    params = parse_infotext(Image.open(out.splitlines()[0]).text["parameters"]).params
    assert params["IP-Adapter 0"].startswith("Model: ip-adapter_tiny-sd1 [")
    assert params["IP-Adapter 0"].endswith("Weight: 0.8, Mode: content")
    assert params["IP-Adapter 1"].endswith("Weight: 0.5, Mode: style")


def test_an_adapter_that_is_not_there_exits_1_with_a_sentence(capsys, tmp_path, tiny_models):
    path = save_picture(tmp_path / "r.png")
    code = main(["--model", str(tiny_models["sd1"].folder), "--prompt", "x", "--steps", "2", "--width", "64",
                 "--height", "64", "--reference", f"image={path},adapter=ip-adapter_nowhere",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert "sfumato: No IP-Adapter file is named ip-adapter_nowhere. Put it (a .safetensors file) in " in err
    assert "Traceback" not in err
