"""Every mode end to end on the tiny models: what a user would check by eye."""

import numpy as np
import torch
import pytest

from desktop.core.errors import Cancelled, NoPicture
from desktop.core.geometry import Bounds, Extent, Margins
from desktop.core.progress import TaskState
from desktop.core.request import Conditioning, InpaintArea, MaskedContent, Mode
from desktop.engine import generate
from tests.support.requests import change, make_request


@pytest.fixture
def sd1(tiny_models):
    return str(tiny_models["sd1"].folder)


def run(manager, **fields):
    fields = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 4, "seed": 1, **fields}
    return generate.run(make_request(**fields), TaskState(), manager)


def picture(seed=0, w=64, h=64):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def square_mask(w=64, h=64, box=(20, 20, 24, 24)):
    mask = np.zeros((h, w), np.uint8)
    mask[Bounds(*box).slices] = 255
    return mask


def outside(mask, blur):
    """Pixels farther than `blur` from anything painted."""
    reach = Bounds.of_mask(mask).pad(blur).clamp(Extent(mask.shape[1], mask.shape[0]))
    keep = np.ones(mask.shape, bool)
    keep[reach.slices] = False
    return keep


def test_txt2img_is_reproducible_per_seed(cpu_manager, sd1):
    first = run(cpu_manager, model=sd1, seed=5)[0]
    again = run(cpu_manager, model=sd1, seed=5)[0]
    other = run(cpu_manager, model=sd1, seed=6)[0]
    assert first.image.shape == (64, 64, 3) and first.image.dtype == np.uint8
    assert first.image.std() > 1  # a picture, not a flat fill
    assert np.array_equal(first.image, again.image)
    assert not np.array_equal(first.image, other.image)


def test_batch_images_use_seed_plus_index(cpu_manager, sd1):
    batch = run(cpu_manager, model=sd1, seed=10, batch_size=2, width=72, height=64)
    assert [r.seed for r in batch] == [10, 11]
    assert batch[0].image.shape == (64, 72, 3)
    single = run(cpu_manager, model=sd1, seed=11, width=72, height=64)[0]
    # Batched matrix products may round differently from single ones; the picture is the same.
    assert np.abs(batch[1].image.astype(int) - single.image.astype(int)).mean() < 2.0
    assert not np.array_equal(batch[0].image, batch[1].image)


def test_a_preview_arrives_after_every_step(cpu_manager, sd1):
    steps = []
    state = TaskState(on_step=lambda i, n, preview: steps.append((i, n, preview)))
    generate.run(make_request(prompt="x", model=sd1, width=64, height=96, steps=5, seed=1), state, cpu_manager)
    assert [(i, n) for i, n, _ in steps] == [(i, 5) for i in range(1, 6)]
    assert all(p.shape == (12, 8, 3) and p.dtype == np.uint8 for _, _, p in steps)


def test_cancel_stops_within_one_step_and_skips_the_decode(cpu_manager, sd1, monkeypatch):
    run(cpu_manager, model=sd1)  # loaded
    pipe = cpu_manager.pipeline("txt2img")
    decodes = []
    monkeypatch.setattr(pipe.vae, "decode", lambda *a, **k: decodes.append(1))
    seen = []
    state = TaskState()

    def on_step(index, total, preview):
        seen.append(index)
        if index == 3:
            state.cancel()

    state._on_step = on_step
    with pytest.raises(Cancelled) as caught:
        generate.run(make_request(prompt="x", model=sd1, width=64, height=64, steps=20, seed=1), state, cpu_manager)
    assert seen == [1, 2, 3] and caught.value.step == 4
    assert decodes == []


def test_img2img_follows_the_input_and_strength(cpu_manager, sd1):
    steps = []
    state = TaskState(on_step=lambda i, n, preview: steps.append(n))
    request = make_request(prompt="x", model=sd1, mode=Mode.IMG2IMG, init_image=picture(3), strength=0.25,
                                steps=8, width=64, height=64, seed=2)
    first = generate.run(request, state, cpu_manager)[0].image
    assert steps == [2, 2]  # strength 0.25 of 8 steps
    same = generate.run(request, TaskState(), cpu_manager)[0].image
    other = generate.run(change(request, init_image=picture(4)), TaskState(), cpu_manager)[0].image
    assert np.array_equal(first, same)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("content", list(MaskedContent))
def test_inpaint_keeps_every_pixel_outside_the_mask_and_blur(cpu_manager, sd1, content):
    source, mask = picture(4), square_mask()
    result = run(cpu_manager, model=sd1, mode=Mode.INPAINT, init_image=source, mask=mask, mask_blur=4,
                 masked_content=content, strength=0.9)[0].image
    keep = outside(mask, 4)
    assert np.array_equal(result[keep], source[keep])
    assert np.abs(result[mask > 0].astype(int) - source[mask > 0].astype(int)).mean() > 10


def test_only_masked_inpaint_works_on_a_crop_and_pastes_back(cpu_manager, sd1):
    source, mask = picture(5, 160, 120), square_mask(160, 120, (100, 70, 16, 16))
    result = run(cpu_manager, model=sd1, mode=Mode.INPAINT, init_image=source, mask=mask, mask_blur=2,
                 inpaint_area=InpaintArea.ONLY_MASKED, inpaint_padding=8, strength=1.0)[0].image
    assert result.shape == source.shape
    keep = outside(mask, 2)
    assert np.array_equal(result[keep], source[keep])
    assert not np.array_equal(result[mask > 0], source[mask > 0])


def test_inpaint_with_a_9_channel_inpainting_model(cpu_manager, tiny_models):
    model = str(tiny_models["sd1-inpaint"].folder)
    source, mask = picture(6), square_mask()
    result = run(cpu_manager, model=model, mode=Mode.INPAINT, init_image=source, mask=mask, mask_blur=0)[0].image
    assert np.array_equal(result[mask == 0], source[mask == 0])
    assert not np.array_equal(result[mask > 0], source[mask > 0])
    # The inpainting model also does plain txt2img and img2img.
    assert run(cpu_manager, model=model)[0].image.shape == (64, 64, 3)
    assert run(cpu_manager, model=model, mode=Mode.IMG2IMG, init_image=source)[0].image.shape == (64, 64, 3)


@pytest.mark.parametrize("kind", ["sd1", "sd1-inpaint"])
def test_outpaint_grows_the_image_and_keeps_the_original(cpu_manager, tiny_models, kind):
    source = picture(7, 64, 56)
    result = run(cpu_manager, model=str(tiny_models[kind].folder), mode=Mode.OUTPAINT, init_image=source,
                 expand=Margins(16, 0, 16, 8), mask_blur=4)[0]
    assert result.image.shape == (64, 96, 3)
    assert (result.request.width, result.request.height) == (96, 64)
    inner = result.image[0:52, 20:76]  # the original, farther than the feather from its edges
    assert np.array_equal(inner, source[0:52, 4:60])
    margin = result.image[:, :16]
    assert margin.std() > 1  # generated, not left empty


def test_outpaint_of_a_transparent_area_with_a_painted_mask_repaints_both(cpu_manager, sd1):
    source = np.dstack([picture(8), np.full((64, 64), 255, np.uint8)])
    source[:, 48:, 3] = 0  # the right strip is empty (past the canvas edge)
    painted = square_mask(box=(4, 4, 12, 12))
    result = run(cpu_manager, model=sd1, mode=Mode.OUTPAINT, init_image=source, mask=painted, mask_blur=2)[0]
    assert result.image.shape == (64, 64, 3)
    keep = outside(painted, 2)
    keep[:, 46:] = False  # the empty strip and its feather
    assert np.array_equal(result.image[keep], source[..., :3][keep])
    assert not np.array_equal(result.image[4:16, 4:16], source[4:16, 4:16, :3])
    assert result.image[:, 48:].std() > 1


def test_sdxl_txt2img_and_inpaint(cpu_manager, tiny_models):
    model = str(tiny_models["sdxl"].folder)
    image = run(cpu_manager, model=model, seed=3)[0].image
    assert image.shape == (64, 64, 3)
    source, mask = picture(8), square_mask()
    result = run(cpu_manager, model=model, mode=Mode.INPAINT, init_image=source, mask=mask, mask_blur=2)[0].image
    keep = outside(mask, 2)
    assert np.array_equal(result[keep], source[keep])


def test_out_of_memory_says_what_to_lower_and_the_next_run_works(cpu_manager, sd1, monkeypatch):
    from desktop.core.errors import OutOfMemory

    run(cpu_manager, model=sd1)
    unet = cpu_manager.pipeline("txt2img").unet

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(unet, "forward", exhausted)
    with pytest.raises(OutOfMemory) as caught:
        run(cpu_manager, model=sd1, width=128, height=96, batch_size=3)
    message = str(caught.value)
    assert "128x96" in message and "3 image" in message and "Lower the size or the batch size" in message
    monkeypatch.undo()
    assert run(cpu_manager, model=sd1)[0].image.shape == (64, 64, 3)


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_the_prompt_is_encoded_once_when_only_the_seed_changes(cpu_manager, tiny_models, kind):
    model = str(tiny_models[kind].folder)
    first = run(cpu_manager, model=model, prompt="an encoded lighthouse", seed=21)[0].image
    calls = []
    encoders = [cpu_manager.pipeline("txt2img").text_encoder]
    if kind == "sdxl":
        encoders.append(cpu_manager.pipeline("txt2img").text_encoder_2)
    hooks = [e.register_forward_hook(lambda *args: calls.append(1)) for e in encoders]
    try:
        again = run(cpu_manager, model=model, prompt="an encoded lighthouse", seed=21)[0].image
        run(cpu_manager, model=model, prompt="an encoded lighthouse", seed=22, batch_size=2)
        assert calls == [], "a new seed or batch reuses the encoded prompt"
        run(cpu_manager, model=model, prompt="another text", seed=22)
        assert calls, "a new prompt is encoded"
    finally:
        for hook in hooks:
            hook.remove()
    assert np.array_equal(first, again)


def test_large_pictures_decode_in_tiles_and_small_ones_whole(cpu_manager, sd1, monkeypatch):
    monkeypatch.setattr(generate, "VAE_TILING_AREA", 96 * 96)
    image = run(cpu_manager, model=sd1, width=128, height=128)[0].image
    vae = cpu_manager.pipeline("txt2img").vae
    assert vae.use_tiling and image.shape == (128, 128, 3) and image.std() > 1
    run(cpu_manager, model=sd1)
    assert not vae.use_tiling


def test_one_nan_picture_in_a_batch_keeps_the_others_and_says_why(cpu_manager, sd1, monkeypatch):
    cpu_manager.load(sd1, TaskState())
    vae = cpu_manager.pipeline("txt2img").vae
    real_decode = vae.decode

    def decode(*args, **kwargs):
        decoded = real_decode(*args, **kwargs)
        decoded[0][1] = float("nan")  # the second picture of the batch
        return decoded

    monkeypatch.setattr(vae, "decode", decode)
    statuses = []
    request = make_request(prompt="a lighthouse", model=sd1, width=64, height=64, steps=2, seed=10, batch_size=2)
    results = generate.run(request, TaskState(on_status=statuses.append), cpu_manager)
    assert [r.seed for r in results] == [10] and results[0].image.std() > 1
    part = "its VAE's output" if vae.dtype in (torch.float16, torch.bfloat16) else "its output"
    assert statuses[-1].startswith(f"The model produced no picture for 1 of 2 images: {part} was not a number (NaN)")
    assert statuses[-1].endswith("set the precision to fp32 (File > Settings, or --precision fp32).")


def test_nan_says_which_part_made_no_picture():
    nan_images = np.full((1, 8, 8, 3), np.nan, np.float32)
    good_latents, nan_latents = torch.zeros(1, 4, 1, 1), torch.full((1, 4, 1, 1), float("nan"))
    with pytest.raises(NoPicture, match=r"its VAE's output was not a number \(NaN\) in half precision.*fp32"):
        generate._check_finite(nan_images, good_latents, torch.float16)
    for latents, vae in ((nan_latents, torch.float16), (good_latents, torch.float32), (None, torch.float16)):
        with pytest.raises(NoPicture, match=r"its output was not a number \(NaN\)\. The model file may be damaged"):
            generate._check_finite(nan_images, latents, vae)
    generate._check_finite(np.zeros((1, 8, 8, 3), np.float32), nan_latents, torch.float16)  # a picture is a picture


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_clip_skip_2_encodes_from_the_layer_before_the_last_and_1_is_as_before(cpu_manager, tiny_models, kind):
    """Clip skip 1 (the default) must not change a picture; 2 reads SD 1.x's encoder one layer earlier. SDXL
    pictures are read from the second to last layer whatever the clip skip, as in A1111."""
    model = str(tiny_models[kind].folder)
    plain = run(cpu_manager, model=model, seed=3)[0].image
    pipe = cpu_manager.pipeline("txt2img")
    with torch.inference_mode():
        if kind == "sdxl":
            before = pipe.encode_prompt("a lighthouse", device="cpu", num_images_per_prompt=1,
                                        do_classifier_free_guidance=True)[0]
        else:
            before = pipe.encode_prompt("a lighthouse", "cpu", 1, True)[0]
        one = cpu_manager.span_embeddings(pipe, [Conditioning("a lighthouse", "", 1)], True)[0].kwargs["prompt_embeds"]
        two = cpu_manager.span_embeddings(pipe, [Conditioning("a lighthouse", "", 2)], True)[0].kwargs["prompt_embeds"]
    assert torch.equal(one, before), "clip skip 1 encodes exactly as before"
    skipped = run(cpu_manager, model=model, seed=3, clip_skip=2)[0].image
    assert np.array_equal(run(cpu_manager, model=model, seed=3, clip_skip=1)[0].image, plain)
    if kind == "sdxl":
        assert torch.equal(two, before) and np.array_equal(skipped, plain)
        return
    assert not torch.equal(two, before), "clip skip 2 is another encoding"
    assert np.abs(skipped.astype(int) - plain.astype(int)).mean() > 0.5, "clip skip 2 changes the picture"


def test_every_mode_has_a_preparer_and_an_inpainting_model_inpaints_them_all():
    """PREPARERS is the one table from mode to pipeline inputs; a 9-channel model runs every mode as an inpaint."""
    assert set(generate.PREPARERS) == set(Mode)
    image, mask, size = picture(w=100), square_mask(w=100), {"width": 100, "height": 64}
    requests = {
        Mode.TXT2IMG: make_request(**size),
        Mode.IMG2IMG: make_request(mode=Mode.IMG2IMG, init_image=image, **size),
        Mode.INPAINT: make_request(mode=Mode.INPAINT, init_image=image, mask=mask, **size),
        Mode.OUTPAINT: make_request(mode=Mode.OUTPAINT, init_image=image, expand=Margins(4, 0, 0, 0)),
    }
    for inpaint_model, tasks in ((False, ["txt2img", "img2img", "inpaint", "inpaint"]), (True, ["inpaint"] * 4)):
        traits = generate.Traits("sd1", inpaint_model)
        prepared = [generate.prepare(requests[mode].resolved(), traits) for mode in Mode]
        assert [p.task for p in prepared] == tasks
        for p in prepared:  # every mode's inputs are on the 8-pixel grid (_on_grid wraps them all)
            size = (p.inputs["width"], p.inputs["height"]) if "width" in p.inputs else p.inputs["image"].size
            assert size[0] % 8 == 0 and size[1] % 8 == 0 and p.extras == ()
