"""`sfumato generate`: files written with parseable parameters, one-line errors."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from desktop.cli import main
from desktop.core import credentials
from desktop.core.infotext import parse_infotext


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_txt2img_writes_pngs_with_parameters(capsys, tmp_path, tiny_models):
    model = str(tiny_models["sd1"].folder)
    code, paths, err = run_cli(capsys, "--model", model, "--prompt", "a red fox, snow: dusk", "--negative", "blurry",
                               "--steps", "3", "--seed", "77", "--width", "64", "--height", "72", "--batch", "2",
                               "--sampler", "Euler a", "--out", str(tmp_path))
    assert code == 0, err
    assert len(paths) == 2 and "step 3/3" in err
    first = Image.open(paths[0])
    assert first.size == (64, 72)
    info = parse_infotext(first.text["parameters"])
    assert info.prompt == "a red fox, snow: dusk" and info.negative_prompt == "blurry"
    assert info.params["Seed"] == "77" and info.params["Steps"] == "3" and info.params["Sampler"] == "Euler a"
    assert info.params["Size"] == "64x72" and info.params["Model"] == "tiny-sd1"
    assert parse_infotext(Image.open(paths[1]).text["parameters"]).params["Seed"] == "78"
    assert '"seed": 78' in Image.open(paths[1]).text["sfumato"]
    assert {credentials.read(path).state for path in paths} == {credentials.UNTRUSTED}  # signed, Sfumato's key


def test_clip_skip_is_written_into_the_parameters(capsys, tmp_path, tiny_models):
    code, paths, err = run_cli(capsys, "--model", str(tiny_models["sd1"].folder), "--prompt", "a fox", "--steps", "1",
                               "--seed", "5", "--width", "64", "--height", "64", "--clip-skip", "2",
                               "--out", str(tmp_path))
    assert code == 0, err
    assert parse_infotext(Image.open(paths[0]).text["parameters"]).params["Clip skip"] == "2"


@pytest.mark.parametrize("height, width", [(64, 64), (75, 100)])  # any size: pixels outside the mask stay
def test_inpaint_from_files(capsys, tmp_path, tiny_models, height, width):
    source = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[24:40, 24:40] = 255
    Image.fromarray(source).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code, paths, err = run_cli(capsys, "--model", str(tiny_models["sd1"].folder), "--prompt", "x", "--mode", "inpaint",
                               "--init", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
                               "--mask-blur", "0", "--steps", "3", "--out", str(tmp_path / "out"))
    assert code == 0, err
    result = np.asarray(Image.open(paths[0]))
    assert result.shape == source.shape
    assert np.array_equal(result[mask == 0], source[mask == 0])
    assert "Denoising strength: 0.75" in Image.open(paths[0]).text["parameters"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--prompt", "x", "--width", "8"], "--width: must be between 64 and 4096"),
        (["--prompt", "x", "--steps", "0"], "steps"),
        (["--prompt", "x", "--mode", "inpaint"], "needs --init"),
        (["--prompt", "x", "--init", "missing.png"], "does not exist"),
        (["--prompt", "x", "--sampler", "Warp"], "unknown sampler"),
        (["--prompt", "x", "--expand", "1,2"], "expand"),
        (["--steps", "3"], "--prompt"),
        (["--prompt", "x", "--seed", str(2**33)], "seed"),
        (["--prompt", "x", "--clip-skip", "0"], "--clip-skip: must be between 1 and 12"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, args, words):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == []
    assert len(err.strip().splitlines()) == 1 and words in err


def test_a_closed_stdout_stops_the_paths_but_saves_every_picture(capsys, tmp_path, tiny_models, monkeypatch):
    """`sfumato generate ... | head -1`: the reader has gone; that is no failed generation."""

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = main(["--model", str(tiny_models["sd1"].folder), "--prompt", "a fox", "--steps", "1", "--seed", "5",
                 "--width", "64", "--height", "64", "--batch", "2", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0 and "failed" not in err, err
    assert len(list(tmp_path.glob("**/*.png"))) == 2


def test_model_that_fails_exits_1(capsys, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 4)
    code, out, err = run_cli(capsys, "--model", str(bad), "--prompt", "x", "--steps", "1")
    assert code == 1 and out == []
    assert "broken.safetensors" in err.strip().splitlines()[-1]


def test_demo_model_through_the_real_entry_point(tmp_path):
    """`python -m desktop generate --model demo` builds the demo model and writes a picture."""
    out = subprocess.run(
        [sys.executable, "-m", "desktop", "generate", "--model", "demo", "--prompt", "hello", "--steps", "2",
         "--width", "64", "--height", "64", "--seed", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    written = out.stdout.strip().splitlines()
    assert len(written) == 1 and Image.open(written[0]).size == (64, 64)


def test_a_settings_file_it_cannot_read_is_left_in_place_and_said(capsys, tmp_path, tiny_models):
    from desktop.core import paths

    broken = paths.settings_file()
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("{not json", encoding="utf-8")
    code = main(["--model", str(tiny_models["sd1"].folder), "--prompt", "a fox", "--steps", "1", "--width", "64",
                 "--height", "64", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "could not be read" in err and broken.read_text(encoding="utf-8") == "{not json"
