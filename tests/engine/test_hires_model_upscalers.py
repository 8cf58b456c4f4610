"""Hires fix with model upscalers: "Demo upscaler" and upscaler files run at their native scale, then Lanczos
to the hires size; the infotext says `Hires upscaler: NAME` as A1111; a missing one stops before any work."""

import numpy as np
import pytest
from PIL import Image

from desktop.core import paths
from desktop.core.errors import InvalidRequest
from desktop.core.geometry import Extent
from desktop.core.postprocess import UpscalerError
from desktop.core.progress import TaskState
from desktop.core.request import HIRES_UPSCALERS, Hires
from desktop.engine import generate, hires, tiny_upscaler
from desktop.engine.local import FolderAddons

from .test_hires import request, sd1  # noqa: F401 - the fixture


def test_demo_upscaler_and_files_are_hires_choices():
    assert "Demo upscaler" in HIRES_UPSCALERS
    Hires(enabled=True, upscaler="4x-UltraSharp").validate(64, 64)
    with pytest.raises(InvalidRequest, match="or the name of an upscaler file"):
        Hires(enabled=True, upscaler="a, b").validate(64, 64)


def test_a_model_upscaler_runs_at_its_scale_then_lanczos_to_the_size():
    picture = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    seen = []

    def enlarge(image):
        seen.append(image.shape)
        return np.asarray(Image.fromarray(image).resize((80, 64), Image.Resampling.NEAREST))

    out = hires.upscale_picture(picture, "4x-Tiny", Extent(30, 24), Extent(30, 24), enlarge)
    assert seen == [(16, 20, 3)] and out.shape == (24, 30, 3)
    expected = np.asarray(Image.fromarray(enlarge(picture)).resize((30, 24), Image.Resampling.LANCZOS))
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("name", ["Demo upscaler", "2x-Tiny"])
def test_hires_with_a_model_upscaler_end_to_end(cpu_manager, sd1, name):  # noqa: F811
    tiny_upscaler.build(paths.models_dir() / "upscalers" / "2x-Tiny.safetensors", scale=2)
    steps = []
    state = TaskState(on_step=lambda i, n, p: steps.append((i, n)))
    result, = generate.run(request(sd1, upscaler=name), state, cpu_manager, addons=FolderAddons([]))
    assert result.image.shape == (96, 108, 3) and result.image.std() > 1
    assert result.request.hires.upscaler == name
    assert steps[-1][0] == steps[-1][1] and len({n for _, n in steps}) == 1, "the bar counts denoising steps only"


def test_a_missing_model_upscaler_stops_before_the_first_pass(cpu_manager, sd1):  # noqa: F811
    steps = []
    with pytest.raises(UpscalerError, match="no upscaler of that name"):
        generate.run(request(sd1, upscaler="4x-Missing"), TaskState(on_step=lambda *a: steps.append(a)), cpu_manager)
    assert steps == []


def test_the_cli_records_hires_upscaler_and_refuses_a_missing_one(capsys, tmp_path, tiny_models):
    from desktop.cli import main
    from desktop.core.infotext import parse_infotext

    base = ["--model", str(tiny_models["sd1"].folder), "--prompt", "a fox", "--steps", "2", "--seed", "5",
            "--width", "64", "--height", "64", "--hires-scale", "1.5", "--hires-steps", "2", "--out", str(tmp_path)]
    code = main([*base, "--hires-upscaler", "Demo upscaler"])
    out, err = capsys.readouterr()
    assert code == 0, err
    picture = Image.open(out.splitlines()[0])
    assert picture.size == (96, 96)
    assert parse_infotext(picture.text["parameters"]).params["Hires upscaler"] == "Demo upscaler"
    code = main([*base, "--hires-upscaler", "4x-Missing"])
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--hires-upscaler: 4x-Missing is not one of" in err


def test_loading_the_upscaler_never_unloads_the_checkpoint_of_the_run(cpu_manager, sd1, monkeypatch):  # noqa: F811
    from desktop.engine.models import CHECKPOINT

    asked = []
    make_room = cpu_manager.make_room
    monkeypatch.setattr(cpu_manager, "make_room", lambda pool, size, name, state, spare=(): (
        asked.append((name, set(spare))), make_room(pool, size, name, state, spare)))
    generate.run(request(sd1, upscaler="Demo upscaler"), TaskState(), cpu_manager)
    assert ("Demo upscaler (random weights)", {(CHECKPOINT, sd1)}) in asked
