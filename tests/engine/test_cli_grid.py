"""`sfumato grid`: an X/Y/Z plot on the tiny model writes its cells and the grid and prints their paths, grid first;
a bad axis is one sentence and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from desktop import cli
from desktop.core import credentials
from desktop.__main__ import main
from desktop.core.errors import SfumatoError
from desktop.core.infotext import parse_infotext
from desktop.core.xyz import PLOT_KEY
from tests.support.fake_backend import FakeBackend


def run_grid(capsys, *args):
    code = main(["grid", *args])
    out, err = capsys.readouterr()
    return code, [Path(line) for line in out.splitlines()], err


def test_a_plot_writes_every_cell_and_the_grid_and_prints_the_grid_first(capsys, tmp_path, tiny_models):
    code, paths, err = run_grid(capsys, "--model", str(tiny_models["sd1"].folder), "--prompt", "a red fox",
                                "--width", "64", "--height", "64", "--steps", "2", "--seed", "9",
                                "--x", "Steps: 2,3", "--y", "CFG scale: 3,7", "--out", str(tmp_path))
    assert code == 0, err
    assert len(paths) == 5 and all(path.is_file() for path in paths)
    grid, cells = paths[0], paths[1:]
    assert grid.parent == tmp_path / "grids"
    assert [(parse_infotext(Image.open(p).text["parameters"]).params["Steps"],
             parse_infotext(Image.open(p).text["parameters"]).params["CFG scale"]) for p in cells] == [
        ("2", "3"), ("3", "3"), ("2", "7"), ("3", "7")]
    assert {parse_infotext(Image.open(p).text["parameters"]).params["Seed"] for p in cells} == {"9"}
    chunk = json.loads(Image.open(grid).text[PLOT_KEY])
    assert [(grid.parent / cell["file"]).resolve() for cell in chunk["cells"]] == [p.resolve() for p in cells]
    assert "X Values: \"2,3\"" in Image.open(grid).text["parameters"]
    assert Image.open(grid).width > 2 * 64 and Image.open(grid).height > 2 * 64
    assert "step 10/10" in err and "Plot done in" in err  # one bar over the whole plot: 2+3+2+3 steps
    assert {credentials.read(path).state for path in paths} == {credentials.UNTRUSTED}  # grid and cells signed


@pytest.mark.parametrize(("args", "message"), [
    (["--x", "Steps: 0,4"], "sfumato: The Steps axis's value 0 is out of range; use 1 to 150."),
    (["--x", "Colour: red"], "sfumato: 'Colour' is not an axis of the X/Y/Z plot; the axes are Seed, Steps, CFG "
                             "Scale, Sampler, Schedule type, Denoising, Size, Checkpoint name, Prompt S/R, Clip skip, "
                             "LoRA weight."),
    (["--x", "Steps 4,8"], 'sfumato: --x needs an axis and its values, such as "Steps: 4,8"; the axes are Seed, '
                           "Steps, CFG Scale, Sampler, Schedule type, Denoising, Size, Checkpoint name, Prompt S/R, "
                           "Clip skip, LoRA weight."),
    ([], 'sfumato: give at least one axis, such as --x "Steps: 4,8"'),
    (["--x", "Prompt S/R: dog, cat"], "sfumato: Prompt S/R did not find 'dog' in the prompt or the negative prompt; "
                                      "its first value is the text to look for."),
    (["--x", "Steps: 4", "--steps", "0"], "sfumato: --steps: must be between 1 and 150, got 0"),
])
def test_a_bad_axis_is_one_line_and_exit_2(capsys, args, message):
    code, paths, err = run_grid(capsys, "--prompt", "a fox", *args)
    assert code == 2 and paths == []
    assert err.strip() == message


class FailsOnThirdPicture(FakeBackend):
    def run(self, job, state):
        if len(self.jobs) == 2:
            raise SfumatoError("The engine ran out of memory; try a smaller size.")
        return super().run(job, state)


def test_a_plot_that_fails_halfway_prints_the_cells_it_saved_and_says_the_grid_was_not_made(capsys, tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setattr(cli, "start_backend", lambda args, progress: FailsOnThirdPicture())
    code, paths, err = run_grid(capsys, "--prompt", "a red fox", "--width", "64", "--height", "64", "--steps", "2",
                                "--x", "Steps: 2,3", "--y", "CFG scale: 3,7", "--out", str(tmp_path))
    assert code == 1
    assert len(paths) == 2 and all(path.is_file() and path.parent != tmp_path / "grids" for path in paths)
    assert err.strip().splitlines()[-2:] == ["sfumato: The engine ran out of memory; try a smaller size.",
                                             "sfumato: 2 of 4 pictures were made and saved; the grid was not made."]
    assert not (tmp_path / "grids").exists()
