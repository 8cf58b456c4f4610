"""Hires fix end to end on the tiny models: sizes, steps, one progress bar, cancel and memory in the second pass."""

import numpy as np
import pytest
import torch

from desktop.core.errors import Cancelled
from desktop.core.geometry import Extent
from desktop.core.progress import TaskState
from desktop.core.request import Hires
from desktop.engine import generate, hires
from tests.support.requests import make_request


@pytest.fixture
def sd1(tiny_models):
    return str(tiny_models["sd1"].folder)


def request(model, **hires_values):
    on = Hires(enabled=True, **{"scale": 1.5, "steps": 3, "denoise": 0.5, **hires_values})
    return make_request(prompt="a lighthouse", model=model, width=72, height=64, steps=4, seed=1, hires=on)


def run(manager, req, state=None):
    return generate.run(req, state or TaskState(), manager)


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest)", "Lanczos"])
def test_the_picture_is_the_first_pass_size_times_the_scale(cpu_manager, sd1, upscaler):
    result = run(cpu_manager, request(sd1, upscaler=upscaler))[0]
    assert result.image.shape == (96, 108, 3)  # 72x64 x 1.5, off the 8-pixel grid: made on it and cut back
    assert result.image.std() > 1
    assert result.request.hires.enabled and result.request.width == 72  # the infotext's Size is the first pass's


def test_resize_to_a_size_cuts_the_upscale_at_the_centre(cpu_manager, sd1):
    for upscaler in ("Latent", "Lanczos"):
        result = run(cpu_manager, request(sd1, upscaler=upscaler, resize_width=96, resize_height=96))[0]
        assert result.image.shape == (96, 96, 3)


def test_hires_off_gives_the_same_picture_as_before(cpu_manager, sd1):
    plain = make_request(prompt="a lighthouse", model=sd1, width=72, height=64, steps=4, seed=1)
    off = plain.replace(hires=Hires(enabled=False, scale=3.0, upscaler="Lanczos"))
    first, again = run(cpu_manager, plain)[0], run(cpu_manager, off)[0]
    assert np.array_equal(first.image, again.image)
    assert first.image.shape == (64, 72, 3)


def test_the_second_pass_repaints_the_upscaled_picture_and_repeats_per_seed(cpu_manager, sd1):
    base = run(cpu_manager, request(sd1).replace(hires=Hires()))[0].image
    made = run(cpu_manager, request(sd1, upscaler="Lanczos"))[0].image
    assert np.array_equal(made, run(cpu_manager, request(sd1, upscaler="Lanczos"))[0].image)
    upscaled = hires.upscale_picture(base, "Lanczos", Extent(108, 96), Extent(108, 96))
    assert np.abs(made.astype(int) - upscaled.astype(int)).mean() > 2  # not only more pixels
    stronger = run(cpu_manager, request(sd1, upscaler="Lanczos", denoise=0.9))[0].image
    assert np.abs(stronger.astype(int) - upscaled.astype(int)).mean() > np.abs(made.astype(int) - upscaled.astype(int)).mean()
    other_seed = run(cpu_manager, request(sd1, upscaler="Lanczos").replace(
        sampling=request(sd1).sampling.replace(seed=2)))[0].image
    assert not np.array_equal(made, other_seed)


@pytest.mark.parametrize("hires_steps, denoise, second", [(3, 0.5, 3), (3, 0.2, 3), (0, 0.7, 4), (5, 1.0, 5)])
def test_one_progress_bar_over_both_passes_and_all_hires_steps_run(cpu_manager, sd1, hires_steps, denoise, second):
    seen, status = [], []
    state = TaskState(on_step=lambda i, n, preview: seen.append((i, n, preview.shape)), on_status=status.append)
    run(cpu_manager, request(sd1, steps=hires_steps, denoise=denoise), state)
    total = 4 + second  # A1111: the hires pass runs all its steps (0: the first pass's), whatever the strength
    assert [(i, n) for i, n, _ in seen] == [(i, total) for i in range(1, total + 1)]
    assert [shape for _, _, shape in seen] == [(8, 9, 3)] * 4 + [(12, 14, 3)] * second  # each pass's preview
    assert any("pass 2/2" in text for text in status)


def test_the_schedule_is_a1111s_for_a_hires_pass():
    plan = hires.plan(request("m", steps=10, denoise=0.5))
    assert (plan.steps, plan.schedule_steps) == (10, 20)  # the last 10 steps of a 20-step schedule
    plan = hires.plan(request("m", steps=0, denoise=0.7))
    assert (plan.steps, plan.schedule_steps) == (4, 5)  # int(4 / 0.7)
    assert int(plan.schedule_steps * plan.strength) == plan.steps


def test_cancel_in_the_second_pass_stops_within_one_step(cpu_manager, sd1, monkeypatch):
    run(cpu_manager, request(sd1))  # loaded, both pipelines made
    decodes = []
    vae = cpu_manager.pipeline("img2img").vae
    monkeypatch.setattr(vae, "decode", lambda *a, **k: decodes.append(1))
    seen, state = [], TaskState()

    def on_step(index, total, preview):
        seen.append(index)
        if index == 5:  # the first step of pass 2
            state.cancel()

    state._on_step = on_step
    with pytest.raises(Cancelled) as caught:
        run(cpu_manager, request(sd1), state)
    assert seen == [1, 2, 3, 4, 5] and caught.value.step == 6
    assert decodes == []


def test_out_of_memory_in_the_second_pass_keeps_the_first_pass_picture(cpu_manager, sd1, monkeypatch):
    plain = run(cpu_manager, request(sd1).replace(hires=Hires()))[0].image
    run(cpu_manager, request(sd1))
    pipe2 = cpu_manager.pipeline("img2img")
    calls = []
    real = pipe2.unet.forward

    def exhausted(sample, *args, **kwargs):
        if sample.shape[-1] > 9:  # only at the second pass's size
            calls.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(sample, *args, **kwargs)

    monkeypatch.setattr(pipe2.unet, "forward", exhausted)
    status = []
    results = run(cpu_manager, request(sd1), TaskState(on_status=status.append))
    assert len(calls) == 2  # tried again with lighter settings first
    assert results[0].image.shape == (64, 72, 3) and not results[0].request.hires.enabled
    assert np.abs(results[0].image.astype(int) - plain.astype(int)).max() <= 1
    said = next(text for text in status if "second pass" in text)
    assert "108x96" in said and "first pass's pictures (72x64) are kept" in said and "Lower Upscale by" in said


@pytest.mark.parametrize("kind", ["sd1-inpaint", "sdxl"])
def test_inpainting_and_sdxl_models(cpu_manager, tiny_models, kind):
    for upscaler in ("Latent", "Lanczos"):
        result = run(cpu_manager, request(str(tiny_models[kind].folder), upscaler=upscaler, scale=2.0))[0]
        assert result.image.shape == (128, 144, 3) and result.image.std() > 1


def test_a_batch_gets_a_second_pass_per_picture(cpu_manager, sd1):
    req = request(sd1)
    batch = run(cpu_manager, req.replace(sampling=req.sampling.replace(batch_size=2)))
    assert [r.seed for r in batch] == [1, 2] and all(r.image.shape == (96, 108, 3) for r in batch)
    single = run(cpu_manager, req)[0]
    assert np.abs(batch[0].image.astype(int) - single.image.astype(int)).mean() < 2.0


def test_the_cli_makes_and_records_a_hires_picture(capsys, tmp_path, tiny_models):
    from PIL import Image

    from desktop.cli import main
    from desktop.core.infotext import parse_infotext

    code = main(["--model", str(tiny_models["sd1"].folder), "--prompt", "a fox", "--steps", "2", "--seed", "5",
                 "--width", "64", "--height", "64", "--hires-scale", "2", "--hires-upscaler", "Latent",
                 "--hires-steps", "2", "--hires-denoise", "0.5", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "step 4/4" in err and "pass 2/2" in err
    picture = Image.open(out.splitlines()[0])
    assert picture.size == (128, 128)
    params = parse_infotext(picture.text["parameters"]).params
    assert (params["Size"], params["Denoising strength"], params["Hires upscale"], params["Hires steps"],
            params["Hires upscaler"]) == ("64x64", "0.5", "2", "2", "Latent")


@pytest.mark.parametrize("args, words", [
    (["--hires-scale", "5"], "--hires-scale: must be between 1 and 4"),
    (["--hires-steps", "10"], "need --hires-scale X or --hires-resize WxH"),
    (["--hires-resize", "big"], "expected a size like 1024x1536"),
    (["--hires-scale", "2", "--hires-denoise", "0"], "--hires-denoise: 0 would leave"),
    (["--hires-scale", "2", "--hires-upscaler", "ESRGAN"], "--hires-upscaler"),
    (["--hires-scale", "2", "--mode", "img2img", "--init", "x.png"], "hires fix is for txt2img"),
])
def test_bad_hires_options_exit_2_with_one_line(capsys, tmp_path, args, words):
    from PIL import Image

    from desktop.cli import main

    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    args = [str(tmp_path / a) if a == "x.png" else a for a in args]
    code = main(["--prompt", "x", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err, err
