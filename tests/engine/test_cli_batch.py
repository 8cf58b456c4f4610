"""`sfumato batch` on the tiny model: killed with SIGKILL halfway and run again, every output exists exactly once
(no cat-00-2.png, no holes) and the manifest is complete; bad options are one line and exit 2."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from desktop.cli_batch import batch_from_args, build_parser, main
from desktop.core import paths
from desktop.core.folder_batch import FolderBatchRun
from desktop.core.progress import TaskState
from desktop.core.runs import RunContext
from desktop.core.settings import Settings
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request

STEMS = ("ant", "bee", "cat", "dog", "eel", "fox")


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for k, stem in enumerate(STEMS):
        Image.new("RGB", (64, 64), (40 * k, 120, 200 - 30 * k)).save(folder / f"{stem}.png")
    return folder


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_batch_killed_halfway_and_run_again_makes_each_output_exactly_once(tmp_path, tiny_models):
    folder, out = _folder(tmp_path), tmp_path / "out"
    command = [sys.executable, "-m", "desktop", "batch", "--input", str(folder), "--mode", "img2img",
               "--variations", "2", "--model", str(tiny_models["sd1"].folder), "--prompt", "a harbour",
               "--steps", "2", "--strength", "1", "--seed", "40", "--out", str(out)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    written = []
    try:
        while len(written) < 3:
            line = first.stdout.readline()
            assert line, "the batch ended before its third output"
            written.append(line.strip())
        first.send_signal(signal.SIGKILL)  # the fourth output may be half written, written but unlisted, or listed
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
        first.stdout.close()
    listed = [o["file"] for e in json.loads((out / "manifest.json").read_text("utf-8"))["inputs"] for o in e["outputs"]]
    assert len(listed) < 12  # the manifest is rewritten every few seconds: what it does not list is made again

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    expected = [f"{stem}-{k:02d}.png" for stem in STEMS for k in (0, 1)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, "manifest.csv", "manifest.json"])
    again = [Path(line).name for line in second.stdout.splitlines()]
    assert sorted(again + listed) == expected  # what was done is skipped, the rest made once
    skipped = f", {len(listed)} skipped (already done)" if listed else ""
    assert second.stderr.strip().splitlines()[-1] == (
        f"sfumato: {len(again)} outputs{skipped}; they and manifest.csv are in {out}")
    with open(out / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["input"], r["output"], r["status"], r["seed"]) for r in rows] == [
        (f"{stem}.png", f"{stem}-{k:02d}.png", "done", str(40 + k)) for stem in STEMS for k in (0, 1)]
    assert all(f"Seed: {r['seed']}" in Image.open(out / r["output"]).text["parameters"] for r in rows)
    assert [e["status"] for e in json.loads((out / "manifest.json").read_text("utf-8"))["inputs"]] == ["done"] * 6


@pytest.mark.parametrize("args, said", [
    (["--mode", "inpaint"], "sfumato: --mask-dir: inpaint needs a folder of masks named as the pictures (none was "
                            "given)."),
    (["--mode", "img2img", "--steps", "0"], "sfumato: --steps: must be between 1 and 150, got 0"),
    (["--mode", "img2img", "--variations", "0"], "sfumato: --variations: must be a whole number from 1 to 100, got 0."),
    (["--mode", "img2img", "--init", "a.png"], "sfumato: --init is not a batch option: the pictures, their masks and "
                                               "sizes come from --input and --mask-dir"),
    (["--mode", "upscale", "--scale", "9"], "sfumato: --scale: the scale must be more than 0 and at most 8, got 9.0."),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, capsys, args, said):
    code = main(["--input", str(_folder(tmp_path)), *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.strip() == said


def test_another_batch_of_the_same_folder_gets_a_fresh_default_folder_and_an_out_holding_one_is_refused(tmp_path,
                                                                                                      capsys):
    folder, batches = _folder(tmp_path), paths.output_dir() / "batches"
    FolderBatchRun(folder, "img2img", batches / "in", make_request(prompt="a quay", steps=2, seed=3)).check().run(
        FakeBackend(), TaskState(), RunContext(Settings(), None, None))
    forest = ["--input", str(folder), "--mode", "img2img", "--prompt", "a forest", "--steps", "2", "--seed", "3"]
    assert batch_from_args(build_parser().parse_args(forest)).output == batches / "in-2"
    code = main([*forest, "--out", str(batches / "in")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.strip() == (
        f"sfumato: --out: {batches / 'in'} holds another batch (its manifest.json has other settings); choose "
        "another output folder.")
