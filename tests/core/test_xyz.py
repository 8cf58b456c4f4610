"""desktop/core/xyz.py: the X/Y/Z plot's axes typed as in A1111, its cells, its run on a FakeBackend and its grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from desktop.core import infotext, xyz
from desktop.core.errors import Cancelled
from desktop.core.imageio import save_png
from desktop.core.outputs import save_result
from desktop.core.progress import TaskState
from desktop.core.request import Hires, Mode
from desktop.core.runs import Run, RunContext, decode_run
from desktop.core.settings import Settings
from desktop.core.xyz import MAX_CELLS, PLOT_KEY, InvalidAxis, PlotRun, axis_labels, draw_grid, parse_axis
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request


def values(name: str, text: str, choices=None) -> tuple:
    return parse_axis(name, text, choices).values


# -- parsing, as A1111's X/Y/Z plot reads the same text


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("Steps", "3,5,7", (3, 5, 7)),
    ("Steps", " 3 , 5,7, ", (3, 5, 7)),
    ("Steps", "1-5", (1, 2, 3, 4, 5)),
    ("Steps", "1-5 (+2)", (1, 3, 5)),
    ("Steps", "10-5 (-3)", (10, 7)),
    ("Steps", "10-1 (-3)", (10, 7, 4)),  # A1111 stops a falling range before end + 1
    ("Steps", "1-10 [4]", (1, 4, 7, 10)),
    ("Steps", "1-10 [3]", (1, 5, 10)),  # 5.5 truncated, as A1111's int()
    ("Seed", "0-10 [4]", (0, 3, 6, 10)),
    ("Steps", "4, 10-12, 20", (4, 10, 11, 12, 20)),
    ("Seed", "-1, 5", (-1, 5)),
    ("Clip skip", "1-3", (1, 2, 3)),
    ("CFG Scale", "3,7.5", (3.0, 7.5)),
    ("CFG Scale", "0.5-1.5 (+0.25)", (0.5, 0.75, 1.0, 1.25, 1.5)),
    ("CFG Scale", "1-3", (1.0, 2.0, 3.0)),
    ("CFG Scale", "1-2 [3]", (1.0, 1.5, 2.0)),
    ("Denoising", "0-0.4 (+0.2)", (0.0, 0.2, 0.4)),  # not A1111's extra 0.6 from a binary rounding
    ("Denoising", "0-0.5 (+0.2)", (0.0, 0.2, 0.4)),  # nor its 0.6 past the end
    ("Denoising", "0-1 (+0.1)", tuple(round(0.1 * n, 8) for n in range(11))),
    ("LoRA weight", "1-0 (-0.5)", (1.0, 0.5, 0.0)),
    ("Sampler", "euler a, DPM++ 2M karras", ("Euler a", "DPM++ 2M Karras")),
    ("Schedule type", "karras,automatic", ("Karras", "Automatic")),
    ("Size", "512x512, 768x512", ((512, 512), (768, 512))),
    ("Prompt S/R", 'cat, "dog, big", bird', ("cat", "dog, big", "bird")),
    ("cfg scale", "7", (7.0,)),  # the axis name in any case, as the issue writes "CFG scale"
])
def test_values_are_typed_as_a1111_types_them(name, text, expected):
    assert values(name, text) == expected


def test_checkpoint_names_match_the_models_offered_in_any_case():
    assert values("Checkpoint name", "DEMO, other.safetensors", ["demo", "Other.safetensors"]) == \
        ("demo", "Other.safetensors")
    assert values("Checkpoint name", "C:\\models\\a.safetensors") == ("C:\\models\\a.safetensors",)
    with pytest.raises(InvalidAxis, match=r"^The Checkpoint name axis's value 'nope' is not one of the models "
                                          r"\(demo, other\)\.$"):
        parse_axis("Checkpoint name", "nope", ["demo", "other"])


@pytest.mark.parametrize(("name", "text", "message"), [
    ("Colour", "1,2", "'Colour' is not an axis of the X/Y/Z plot; the axes are Seed, Steps, CFG Scale, Sampler, "
                      "Schedule type, Denoising, Size, Checkpoint name, Prompt S/R, Clip skip, LoRA weight."),
    ("Steps", " , ", "The Steps axis has no values; type them as in 3,5,7 or 1-5."),
    ("Steps", "4.5", "The Steps axis's value '4.5' is not a whole number or a range such as 1-5."),
    ("Steps", "0,4", "The Steps axis's value 0 is out of range; use 1 to 150."),
    ("Steps", "1-5 (+0)", "The Steps axis's range '1-5 (+0)' has a step of 0; use +1 or -1."),
    ("Steps", "10-1", "The Steps axis's range '10-1' gives no values; for a falling range give a negative step, "
                      "such as 10-1 (-3)."),
    ("Seed", "1-100000", f"The X/Y/Z plot would make 100000 pictures; at most {MAX_CELLS} fit in one plot: use "
                         "fewer values."),
    ("Steps", "1-10 [0]", "The Steps axis's '1-10 [0]' asks for no values; put a count of 1 or more in [ ]."),
    ("CFG Scale", "high", "The CFG Scale axis's value 'high' is not a number or a range such as 0.5-1.5 (+0.25)."),
    ("CFG Scale", "nan", "The CFG Scale axis's value nan is out of range; use 0 to 30."),
    ("Denoising", "0.5-1.5 (+0.5)", "The Denoising axis's value 1.5 is out of range; use 0 to 1."),
    ("Sampler", "Euler, Turbo", "The Sampler axis's value 'Turbo' is not a sampler; the samplers are Euler, Euler a, "
                                "DPM++ 2M, DPM++ 2M SDE, DPM++ SDE, DDIM, UniPC, LMS, Heun, DPM2, DPM2 a, LCM, TCD."),
    ("Schedule type", "Linear", "The Schedule type axis's value 'Linear' is not a schedule type; they are "
                                "Automatic, Karras, Exponential, Beta, SGM Uniform."),
    ("Size", "512", "The Size axis's value '512' is not a size such as 512x768."),
    ("Size", "32x32", "The Size axis's value 32x32 is out of range; sides from 64 to 4096 pixels work."),
])
def test_a_bad_axis_is_one_sentence_naming_it(name, text, message):
    with pytest.raises(InvalidAxis) as raised:
        parse_axis(name, text)
    assert str(raised.value) == message


def test_labels_name_the_axis_as_a1111_writes_them():
    assert axis_labels(parse_axis("Steps", "4,8")) == ["Steps: 4", "Steps: 8"]
    assert axis_labels(parse_axis("CFG Scale", "7, 7.5")) == ["CFG Scale: 7", "CFG Scale: 7.5"]
    assert axis_labels(parse_axis("Sampler", "euler")) == ["Euler"]
    assert axis_labels(parse_axis("Prompt S/R", "cat,dog")) == ["cat", "dog"]
    assert axis_labels(parse_axis("Size", "512x768")) == ["Size: 512x768"]
    assert axis_labels(parse_axis("Checkpoint name", "/models/a.safetensors")) == ["Checkpoint name: a.safetensors"]


# -- cells


BASE = make_request(prompt="a cat <lora:ink:0.8> by the sea", negative_prompt="blurry cat", width=64, height=64,
                    steps=4, seed=11, batch_size=3)


def test_cells_run_x_fastest_then_y_then_z_each_of_one_picture():
    plot = PlotRun(BASE, parse_axis("Steps", "2,3"), parse_axis("CFG Scale", "3,5,7"), parse_axis("Seed", "1,2"))
    cells = plot.cells()
    assert len(cells) == plot.pictures() == 12
    assert [(c.x, c.y, c.z) for c in cells[:4]] == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]
    assert [(c.request.sampling.steps, c.request.sampling.cfg_scale, c.request.sampling.seed) for c in cells[:3]] \
        == [(2, 3.0, 1), (3, 3.0, 1), (2, 5.0, 1)]
    assert (cells[-1].request.sampling.steps, cells[-1].request.sampling.cfg_scale,
            cells[-1].request.sampling.seed) == (3, 7.0, 2)
    assert {c.request.sampling.batch_size for c in cells} == {1}
    assert plot.describe() == "X/Y/Z plot: Steps × CFG Scale × Seed, 12 pictures"
    assert plot.total_steps() == 6 * (2 + 3)


def test_a_lone_y_axis_makes_a_column():
    cells = PlotRun(BASE, y=parse_axis("Steps", "2,3")).cells()
    assert [(c.x, c.y, c.z) for c in cells] == [(0, 0, 0), (0, 1, 0)]


def test_prompt_search_and_replace_keeps_the_first_cell_s_prompt_and_changes_both_prompts():
    cells = PlotRun(BASE, parse_axis("Prompt S/R", 'cat, "dog, big"')).cells()
    assert [c.request.conditioning.prompt for c in cells] == ["a cat <lora:ink:0.8> by the sea",
                                                             "a dog, big <lora:ink:0.8> by the sea"]
    assert cells[1].request.conditioning.negative_prompt == "blurry dog, big"
    with pytest.raises(InvalidAxis, match=r"^Prompt S/R did not find 'horse' in the prompt or the negative prompt; "):
        PlotRun(BASE, parse_axis("Prompt S/R", "horse,cow")).cells()


@pytest.mark.parametrize("text", ["cat, ", 'cat, ""', 'cat,""'])
def test_prompt_search_and_replace_keeps_an_empty_value_with_and_without_a_term(text):
    axis = parse_axis("Prompt S/R", text)
    assert axis.values == ("cat", "")
    cells = PlotRun(BASE, axis).cells()
    assert [c.request.conditioning.prompt for c in cells] == ["a cat <lora:ink:0.8> by the sea",
                                                             "a  <lora:ink:0.8> by the sea"]
    assert axis_labels(axis) == ["cat", ""]


@pytest.mark.parametrize("text", [", cat", '"", cat'])
def test_prompt_search_and_replace_needs_a_text_to_look_for(text):
    with pytest.raises(InvalidAxis, match=r"^The Prompt S/R axis's first value is the text to look for in the "
                                          r"prompt; it cannot be empty\.$"):
        parse_axis("Prompt S/R", text)
    with pytest.raises(InvalidAxis, match=r"^The Prompt S/R axis has no values"):
        parse_axis("Prompt S/R", " , ")


def test_lora_weight_replaces_the_weight_of_the_first_lora_tag():
    request = BASE.replace(conditioning=BASE.conditioning.replace(prompt="<lora:ink:0.8:0.5> cat <lora:sea:1>"))
    cells = PlotRun(request, parse_axis("LoRA weight", "0, 0.5")).cells()
    assert [c.request.conditioning.prompt for c in cells] == ["<lora:ink:0> cat <lora:sea:1>",
                                                             "<lora:ink:0.5> cat <lora:sea:1>"]
    with pytest.raises(InvalidAxis, match=r"^The LoRA weight axis needs a <lora:name:weight> tag in the prompt"):
        PlotRun(make_request(prompt="a cat"), parse_axis("LoRA weight", "1")).cells()


def test_a_sampler_without_the_base_schedule_falls_back_to_automatic():
    base = BASE.replace(sampling=BASE.sampling.replace(sampler="Euler", schedule="Karras"))
    cells = PlotRun(base, parse_axis("Sampler", "Euler, Euler a, DPM++ 2M Exponential")).cells()
    assert [(c.request.sampling.sampler, c.request.sampling.schedule) for c in cells] == [
        ("Euler", "Karras"), ("Euler a", "Automatic"), ("DPM++ 2M", "Exponential")]


def test_denoising_is_the_strength_from_a_picture_and_the_hires_fix_s_in_text_to_image():
    picture = make_request(mode=Mode.IMG2IMG, init_image=np.zeros((64, 64, 3), np.uint8), width=64, height=64)
    assert [c.request.sampling.strength for c in PlotRun(picture, parse_axis("Denoising", "0.5,1")).cells()] == \
        [0.5, 1.0]
    hires = BASE.replace(hires=Hires(enabled=True, scale=2.0))
    assert [c.request.hires.denoise for c in PlotRun(hires, parse_axis("Denoising", "0.3,0.6")).cells()] == [0.3, 0.6]
    with pytest.raises(InvalidAxis, match=r"^The Denoising axis changes nothing in text to image without the "
                                          r"hires fix; turn the hires fix on, or start from a picture\.$"):
        PlotRun(BASE, parse_axis("Denoising", "0.5")).cells()


def test_a_cell_the_request_refuses_names_the_cell():
    picture = make_request(mode=Mode.IMG2IMG, init_image=np.zeros((64, 64, 3), np.uint8), width=64, height=64,
                           steps=4)
    with pytest.raises(InvalidAxis) as raised:
        PlotRun(picture, parse_axis("Denoising", "0.1,0.5")).cells()
    assert str(raised.value) == ("The cell Denoising: 0.1 cannot be made: strength: 0.1 x 4 steps leaves no step "
                                 "to run; raise either.")


def test_too_many_cells_or_no_axis_is_refused_with_the_count():
    plot = PlotRun(BASE, parse_axis("Seed", "1-21"), parse_axis("Steps", "1-20"))
    with pytest.raises(InvalidAxis, match=r"^The X/Y/Z plot would make 420 pictures; at most 400 fit in one plot"):
        plot.cells()
    with pytest.raises(InvalidAxis, match=r"^The X/Y/Z plot has no axis; pick at least one and type its values\.$"):
        PlotRun(BASE).cells()


def test_steps_count_the_hires_pass_and_a_picture_s_strength():
    hires = BASE.replace(hires=Hires(enabled=True, scale=2.0, steps=3))
    assert PlotRun(hires, parse_axis("Steps", "2,4")).total_steps() == (2 + 3) + (4 + 3)
    picture = make_request(mode=Mode.IMG2IMG, init_image=np.zeros((64, 64, 3), np.uint8), width=64, height=64,
                           steps=10, strength=0.5)
    assert PlotRun(picture, parse_axis("Seed", "1,2")).total_steps() == 10


def test_random_seeds_are_drawn_once_the_base_s_for_every_cell_each_axis_value_its_own():
    plot = PlotRun(BASE.replace(sampling=BASE.sampling.replace(seed=-1)), parse_axis("Steps", "2,3"),
                   parse_axis("Seed", "-1, -1, 7")).fixed()
    assert plot.y.values[2] == 7 and -1 not in plot.y.values and plot.y.values[0] != plot.y.values[1]
    fixed = PlotRun(BASE.replace(sampling=BASE.sampling.replace(seed=-1)), parse_axis("Steps", "2,3")).fixed()
    assert len({c.request.sampling.seed for c in fixed.cells()}) == 1 and fixed.base.sampling.seed != -1


# -- the run


class Saver:
    """A RunContext that saves as the worker does (a lone job's files, and add_picture's), keeping what it saved."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.cells: list[Path] = []
        self.context = RunContext(Settings(output_folder=str(folder)), self.save, self.add_picture)

    def save(self, results, loaded):
        shown = []
        for r in results:
            path = save_result(self.folder, r.image, r.request, r.seed, loaded.name, loaded.hash, r.params)
            self.cells.append(path)
            shown.append((r.image, r.seed, path))
        return shown

    def add_picture(self, name, image, parameters, extra):
        return save_png(self.folder / name, image, {"parameters": parameters, **extra})


def test_a_plot_loads_each_checkpoint_once_and_saves_every_cell_with_its_own_infotext(tmp_path):
    backend, saver, bar = FakeBackend(), Saver(tmp_path / "out"), []
    plot = PlotRun(BASE, parse_axis("Checkpoint name", "demo, other"), parse_axis("Steps", "2,3,4"))
    assert isinstance(plot, Run)
    outcome = plot.run(backend, TaskState(on_step=lambda i, n, preview: bar.append((i, n))), saver.context)
    # 6 cells over two models, alternating in the grid: each model loads once and its cells run together
    assert backend.loads == ["demo", "other"]
    assert [(job.request.model, job.request.sampling.steps) for job in backend.jobs] == [
        ("demo", 2), ("demo", 3), ("demo", 4), ("other", 2), ("other", 3), ("other", 4)]
    cells = plot.cells()
    for (image, seed, path), cell in zip(outcome.shown[1:], cells, strict=True):  # the grid's order
        name = cell.request.model  # the fake backend names a model by its ref and hashes the ref
        expected = infotext.format_infotext(infotext.from_request(cell.request.resolved(), 11, name, _hash(name)))
        assert Image.open(path).text["parameters"] == expected
        assert seed == 11
    assert [n for _, n in bar] == [plot.total_steps()] * len(bar) and [i for i, _ in bar] == \
        list(range(1, plot.total_steps() + 1))
    assert outcome.summary.startswith("Plot done in ") and outcome.summary.endswith(
        f": 6 pictures and the grid saved to {tmp_path / 'out'}")


def _hash(ref: str) -> str:
    import hashlib

    return hashlib.sha256(ref.encode()).hexdigest()[:10]


def test_the_grid_links_every_cell_file_and_carries_a1111_s_parameters(tmp_path):
    saver = Saver(tmp_path / "out")
    plot = PlotRun(BASE, parse_axis("Steps", "2,3"), parse_axis("CFG Scale", "3,7"), parse_axis("Seed", "1,2"))
    outcome = plot.run(FakeBackend(), TaskState(), saver.context)
    grid, seed, path = outcome.shown[0]
    assert seed == -1 and path.parent == tmp_path / "out" / "grids" and len(outcome.shown) == 9
    text = Image.open(path).text
    chunk = json.loads(text[PLOT_KEY])
    assert chunk["x"] == {"name": "Steps", "labels": ["Steps: 2", "Steps: 3"]}
    assert chunk["y"] == {"name": "CFG Scale", "labels": ["CFG Scale: 3", "CFG Scale: 7"]}
    assert chunk["z"] == {"name": "Seed", "labels": ["Seed: 1", "Seed: 2"]}
    assert sorted((path.parent / cell["file"]).resolve() for cell in chunk["cells"]) == \
        sorted(p.resolve() for p in saver.cells)
    assert [(c["x"], c["y"], c["z"], c["seed"]) for c in chunk["cells"]][:3] == [(0, 0, 0, 1), (1, 0, 0, 1),
                                                                                (0, 1, 0, 1)]
    assert [(path.parent / c["file"]).resolve() for c in chunk["cells"]] == \
        [p.resolve() for _, _, p in outcome.shown[1:]]
    params = infotext.parse_infotext(text["parameters"]).params
    assert params["Steps"] == "2" and params["Seed"] == "1" and params["Script"] == "X/Y/Z plot"
    assert (params["X Type"], params["X Values"], params["Y Type"], params["Y Values"], params["Z Type"],
            params["Z Values"], params["Fixed Z Values"]) == ("Steps", "2,3", "CFG Scale", "3,7", "Seed", "1,2",
                                                              "1, 2")
    # two grids of 2x2 cells of 64 pixels, stacked, each with labels on top and on the left
    assert grid.shape[1] > 2 * 64 and grid.shape[0] > 2 * (2 * 64)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), grid)


def test_a_cancelled_plot_keeps_the_cells_it_finished(tmp_path):
    saver = Saver(tmp_path / "out")
    state = TaskState(on_step=lambda i, n, preview: state.cancel() if i == 6 else None)
    plot = PlotRun(BASE, parse_axis("Steps", "2,2,2,2"))
    with pytest.raises(Cancelled):
        plot.run(FakeBackend(), state, saver.context)
    assert len(saver.cells) == 3 and all(path.is_file() for path in saver.cells)
    assert not (tmp_path / "out" / "grids").exists()


def test_a_plot_comes_back_from_the_stored_queue_equal_with_its_picture(tmp_path):
    init = np.random.default_rng(1).integers(0, 256, (64, 80, 3), np.uint8)
    base = make_request(mode=Mode.IMG2IMG, init_image=init, prompt="a quay", width=80, height=64, seed=3)
    plot = PlotRun(base, parse_axis("Denoising", "0.5-1 [3]"), None, parse_axis("Checkpoint name", "demo, x",
                                                                                 ["demo", "x", "y"]))
    data = json.loads(json.dumps(plot.encode()))
    assert data["kind"] == "plot"
    back = decode_run(data)
    assert back == plot and np.array_equal(back.base.images.init, init)
    assert back.describe() == "X/Y/Z plot: Denoising × Checkpoint name, 6 pictures"


def test_a_plot_whose_checkpoint_axis_was_typed_as_the_pickers_labels_comes_back_from_the_stored_queue():
    # what the dialog queues: the text as typed (the picker's labels), the values the models they load
    axis = xyz.Axis("Checkpoint name", "alpha, Demo model (random weights)", ("/models/alpha.safetensors", "demo"))
    plot = PlotRun(make_request(prompt="a quay", width=64, height=64, seed=3), axis)
    back = decode_run(json.loads(json.dumps(plot.encode())))
    assert back == plot and back.x.values == ("/models/alpha.safetensors", "demo")


@pytest.mark.parametrize("stored", [[], [3], [""], "demo", None])
def test_a_stored_plot_with_a_damaged_checkpoint_axis_is_refused_with_a_sentence(stored):
    data = json.loads(json.dumps(PlotRun(BASE, parse_axis("Checkpoint name", "demo")).encode()))
    data["axes"][0]["values"] = stored
    with pytest.raises(xyz.SfumatoError, match=r"^A queued X/Y/Z plot could not be read back \(.*\); make it again\.$"):
        decode_run(data)


# -- drawing


def test_a_grid_has_its_cells_and_labels_in_bands_on_top_and_left():
    cells = [np.full((64, 96, 3), 40 * k, np.uint8) for k in range(6)]
    grid = draw_grid(cells, ["Steps: 4", "Steps: 8", "Steps: 16"], ["CFG Scale: 3", "CFG Scale: 7"], "Seed: 5")
    bare = draw_grid(cells, ["", "", ""], [])
    assert bare.shape == (2 * 64, 3 * 96, 3)  # no labels: the cells alone
    top = grid.shape[0] - 2 * 64
    left = grid.shape[1] - 3 * 96
    assert top > 12 and left > 12
    assert (grid[:top, left:] < 128).any() and (grid[top:, :left] < 128).any()  # text in both bands
    assert np.array_equal(grid[top:top + 64, left:left + 96], cells[0])
    assert np.array_equal(grid[top + 64:, left + 192:], cells[5])
    # a long label wraps to more lines, so its band grows
    long = draw_grid(cells, ["Prompt S/R: a very long piece of the prompt to replace"] * 3, ["a", "b"])
    assert long.shape[0] - 128 > draw_grid(cells, ["short"] * 3, ["a", "b"]).shape[0] - 128


def test_a_grid_too_large_to_open_is_drawn_with_smaller_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(xyz, "MAX_GRID_PIXELS", 4 * 64 * 64 // 4)  # four 64x64 cells must shrink to 32x32
    outcome = PlotRun(BASE, parse_axis("Steps", "2,3"), parse_axis("CFG Scale", "3,7")).run(
        FakeBackend(), TaskState(), Saver(tmp_path / "out").context)
    grid = outcome.shown[0][0]
    labels_w = grid.shape[1] - 2 * 32
    assert 0 < labels_w < 100 and all(image.shape == (64, 64, 3) for image, _, _ in outcome.shown[1:])
    assert grid.shape[0] < 2 * 64 + 40

