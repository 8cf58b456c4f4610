"""`sfumato generate` with hostile arguments and a hostile disk: one sentence each, and every picture accounted for."""

import errno
import os
import time

import numpy as np
import pytest
from PIL import Image

from desktop.cli import main
from desktop.core.gallery.index import GalleryIndex
from desktop.core.gallery.store import INDEX_NAME
from desktop.core.infotext import parse_infotext


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_prompt_that_was_not_utf8_is_one_line_naming_the_argument(capsys):
    # `--prompt $'a \xff cat'`: Python hands the byte over as the lone surrogate U+DCFF.
    code, out, err = run_cli(capsys, "--prompt", "a \udcff cat", "--steps", "1")
    assert code == 2 and out == []
    assert one_line(err).startswith("sfumato: --prompt: character 3 is not valid text")


@pytest.mark.parametrize("args", [["--expand", "-64,0,0,0"], ["--expand=-64,0,0,0"]])
def test_negative_margins_are_refused_with_a_sentence_not_taken_for_an_option(capsys, tmp_path, args):
    Image.new("RGB", (64, 64)).save(tmp_path / "in.png")
    code, out, err = run_cli(capsys, "--prompt", "x", "--mode", "outpaint", "--init", str(tmp_path / "in.png"), *args)
    line = one_line(err)
    assert code == 2 and "--expand" in line and "0 or more" in line and "-64,0,0,0" in line
    assert "expected one argument" not in line


def test_a_value_that_starts_with_a_dash_is_a_value(capsys):
    code, out, err = run_cli(capsys, "--prompt", "x", "--negative", "-blurry", "--width", "8")
    assert code == 2 and "--width: must be between 64 and 4096" in one_line(err), "--negative took -blurry"
    code, out, err = run_cli(capsys, "--prompt", "--steps", "3")
    assert code == 2 and "--prompt" in one_line(err), "a forgotten value is still an error"


def test_an_outpaint_too_small_is_refused_before_the_model_loads(capsys, tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    code, out, err = run_cli(capsys, "--model", str(tmp_path / "no-such-model.safetensors"), "--prompt", "x",
                             "--mode", "outpaint", "--init", str(tmp_path / "dot.png"), "--expand", "1,1,1,1")
    line = one_line(err)
    assert code == 2 and line.startswith("sfumato: --expand: the result would be") and "under 64x64" in line


def test_batch_seeds_past_the_largest_wrap_to_0_and_the_pictures_are_indexed(capsys, tmp_path, tiny_models):
    """The gallery finds what the CLI wrote without a refresh, and a partial a killed run left behind is cleared."""
    day = tmp_path / "2001-01-01"
    day.mkdir()
    partial = day / ".tmp-killed.png"
    partial.write_bytes(b"\x89PNG half")
    old = time.time() - 2 * 3600
    os.utime(partial, (old, old))
    code, paths, err = run_cli(capsys, "--model", str(tiny_models["sd1"].folder), "--prompt", "x", "--steps", "1",
                               "--width", "64", "--height", "64", "--seed", "4294967294", "--batch", "3",
                               "--out", str(tmp_path))
    assert code == 0, err
    seeds = [parse_infotext(Image.open(p).text["parameters"]).params["Seed"] for p in paths]
    assert seeds == ["4294967294", "4294967295", "0"]
    index = GalleryIndex(tmp_path / INDEX_NAME)
    try:
        assert sorted(index.stamps()) == sorted(os.path.relpath(p, tmp_path) for p in paths)
    finally:
        index.close()
    assert not partial.exists()


def test_a_full_disk_in_a_batch_prints_what_was_saved_and_says_how_many_were_not(capsys, tmp_path, tiny_models,
                                                                                  monkeypatch):
    real_fsync = os.fsync
    saved = []

    def fsync(fd):  # the disk fills after two pictures: the third picture's bytes cannot be written
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".png"):
            if len(saved) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            saved.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, paths, err = run_cli(capsys, "--model", str(tiny_models["sd1"].folder), "--prompt", "x", "--steps", "1",
                               "--width", "64", "--height", "64", "--seed", "5", "--batch", "4",
                               "--out", str(tmp_path))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert code == 1
    assert len(paths) == 2 and all(Image.open(p).size == (64, 64) for p in paths)
    last = err.strip().splitlines()[-1]
    assert last == f"sfumato: 2 of 4 pictures were saved; 2 could not be written to {tmp_path}: the disk is full."
    kept = sorted(str(p) for p in tmp_path.rglob("*.png") if not p.name.startswith("."))
    assert kept == sorted(paths), "every picture on disk was printed"


@pytest.mark.parametrize("fails", ["safetensors", "fsync"])
def test_a_full_disk_while_building_the_demo_model_is_one_sentence(capsys, monkeypatch, sfumato_home, fails):
    import safetensors.torch
    from safetensors import SafetensorError

    def no_space(*args, **kwargs):
        if fails == "safetensors":  # how safetensors reports it (the traceback of the report)
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if fails == "safetensors":
        monkeypatch.setattr(safetensors.torch, "save_file", no_space)
    else:
        monkeypatch.setattr(os, "fsync", no_space)
    code, out, err = run_cli(capsys, "--model", "demo", "--prompt", "x", "--steps", "1", "--width", "64",
                             "--height", "64", "--out", str(sfumato_home / "out"))
    assert code == 1 and out == []
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("sfumato: could not build the demo model in ")
    assert "the disk is full; free some space there" in err
