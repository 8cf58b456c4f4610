"""Live previews of the flow-matching families: their latent layouts, their latent->RGB factors, their tiny decoders."""

import numpy as np
import pytest
import torch

from desktop.engine.previews import Previewer, image_latents, taesd_dir

FLOW_FAMILIES = ("zimage", "flux2-klein", "flux1", "sd3")


def _pattern(channels: int, height: int, width: int) -> torch.Tensor:
    """A latent in which every value says where it is (channel, row, column)."""
    return torch.arange(channels * height * width, dtype=torch.float32).reshape(1, channels, height, width)


def _flux1_packed(latents: torch.Tensor) -> torch.Tensor:
    from diffusers import FluxPipeline

    batch, channels, height, width = latents.shape
    return FluxPipeline._pack_latents(latents, batch, channels, height, width)


def _flux2_packed(latents: torch.Tensor) -> torch.Tensor:
    from diffusers import Flux2KleinPipeline

    return Flux2KleinPipeline._pack_latents(Flux2KleinPipeline._patchify_latents(latents))


def _to_uint8(rgb) -> np.ndarray:
    return ((torch.as_tensor(rgb).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


# -- unpacking ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pack, channels", [(_flux1_packed, 16), (_flux2_packed, 32)])
def test_packed_tokens_come_back_in_rows_for_a_wide_and_a_tall_picture(pack, channels):
    for width, height in ((96, 64), (64, 96)):
        latents = _pattern(channels, height // 8, width // 8)
        packed = pack(latents)
        assert packed.ndim == 3 and packed.shape[-1] == channels * 4
        assert torch.equal(image_latents(packed, (width, height)), latents)


def test_flux1_unpacking_matches_the_pipeline_s_own():
    from diffusers import FluxPipeline

    latents = torch.randn(2, 16, 8, 12)
    packed = _flux1_packed(latents)
    assert torch.equal(image_latents(packed, (96, 64)), FluxPipeline._unpack_latents(packed, 64, 96, 8)[:1])


def test_flux2_unpacking_matches_the_pipeline_s_own():
    from diffusers import Flux2KleinPipeline

    pipe = Flux2KleinPipeline
    latents = torch.randn(1, 32, 8, 12)
    packed = _flux2_packed(latents)
    ids = pipe._prepare_latent_ids(pipe._patchify_latents(latents))
    theirs = pipe._unpatchify_latents(pipe._unpack_latents_with_ids(packed, ids, 4, 6))
    assert torch.equal(image_latents(packed, (96, 64)), theirs)


def test_only_the_first_picture_of_a_batch_is_shown():
    latents = torch.randn(3, 16, 8, 8)
    assert torch.equal(image_latents(_flux1_packed(latents), (64, 64)), latents[:1])
    assert torch.equal(image_latents(latents, None), latents[:1])  # SD3 and Z-Image: already in rows


def test_packed_tokens_without_a_size_fit_only_a_square():
    square, wide = _pattern(16, 8, 8), _pattern(16, 8, 12)
    assert torch.equal(image_latents(_flux1_packed(square), None), square)
    assert image_latents(_flux1_packed(wide), None) is None
    assert image_latents(_flux1_packed(wide), (64, 64)) is None  # a size that does not fit the tokens
    assert Previewer("flux1")(_flux1_packed(wide)) is None  # no preview rather than a scrambled one


# -- the linear approximation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_a_flat_latent_previews_as_the_family_s_bias_colour(family):
    previewer = Previewer(family)
    latents = torch.zeros(1, 16, 8, 12) if family != "flux2-klein" else _flux2_packed(torch.zeros(1, 32, 8, 12))
    if family == "flux1":
        latents = _flux1_packed(latents)
    preview = previewer(latents, size=(96, 64))
    assert preview.shape == (8, 12, 3) and preview.dtype == np.uint8
    assert (preview == _to_uint8(previewer._bias)).all()


@pytest.mark.parametrize("family, channels, pack", [
    ("flux1", 16, _flux1_packed), ("zimage", 16, None), ("sd3", 16, None), ("flux2-klein", 32, _flux2_packed)])
def test_each_latent_channel_adds_its_published_colour_where_it_is(family, channels, pack):
    previewer = Previewer(family)
    for channel in range(channels):
        latents = torch.zeros(1, channels, 8, 12)
        latents[0, channel, 3, 5] = 2.0  # one latent pixel, right of centre in a wide picture
        preview = previewer(pack(latents) if pack else latents, size=(96, 64))
        assert (preview[3, 5] == _to_uint8(previewer._bias + 2.0 * previewer._factors[channel])).all()
        untouched = np.ones((8, 12), bool)
        untouched[3, 5] = False
        assert (preview[untouched] == _to_uint8(previewer._bias)).all()


def test_the_published_factors_per_family():
    """Spot checks against comfy/latent_formats.py (Flux, SD3, Flux2): a mistyped table would preview wrong colours."""
    flux1, zimage, sd3, flux2 = (Previewer(family) for family in ("flux1", "zimage", "sd3", "flux2-klein"))
    assert flux1._factors.shape == sd3._factors.shape == (16, 3) and flux2._factors.shape == (32, 3)
    assert torch.equal(flux1._factors, zimage._factors)  # one VAE
    assert flux1._factors[9].tolist() == pytest.approx([0.1008, 0.0755, -0.0421])
    assert sd3._factors[15].tolist() == pytest.approx([-0.1448, -0.1463, -0.1189])
    assert sd3._bias.tolist() == pytest.approx([0.2394, 0.2135, 0.1925])
    assert flux2._factors[8].tolist() == pytest.approx([-0.3527, -0.2712, -0.1666])
    assert flux1._bias.tolist() == flux2._bias.tolist() == pytest.approx([-0.0329, -0.0718, -0.0851])


def test_sd_previews_are_as_before():
    latents = torch.randn(2, 4, 12, 8)
    sd1 = Previewer("sd1")
    expected = _to_uint8(torch.einsum("chw,cr->hwr", latents[0], sd1._factors))
    assert (sd1(latents) == expected).all() and (sd1(latents, size=(64, 96)) == expected).all()


# -- tiny decoders ----------------------------------------------------------------------------------------------


def _tiny_decoder(folder, latent_channels: int):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                    latent_channels=latent_channels).save_pretrained(folder)
    return folder


def test_each_family_looks_for_its_own_tiny_decoder(tmp_path):
    folders = {family: taesd_dir(tmp_path, family).name for family in
               ("sd1", "sd2", "sdxl", "sdxl-refiner", "flux1", "zimage", "sd3", "flux2-klein")}
    assert folders == {"sd1": "taesd", "sd2": "taesd", "sdxl": "taesdxl", "sdxl-refiner": "taesdxl",
                       "flux1": "taef1", "zimage": "taef1", "sd3": "taesd3", "flux2-klein": "taef2"}


def test_taef1_decodes_flux1_tokens_to_a_full_size_preview(tmp_path):
    taef1 = _tiny_decoder(taesd_dir(tmp_path, "flux1"), 16)
    previewer = Previewer("flux1", "taesd", taef1)
    assert previewer.method == "taesd"
    assert previewer(_flux1_packed(torch.randn(1, 16, 8, 12)), size=(96, 64)).shape == (64, 96, 3)
    assert Previewer("zimage", "taesd", taef1)(torch.randn(1, 16, 12, 8)).shape == (96, 64, 3)


def test_taesd3_decodes_sd3_latents(tmp_path):
    previewer = Previewer("sd3", "taesd", _tiny_decoder(taesd_dir(tmp_path, "sd3"), 16))
    assert previewer.method == "taesd" and previewer(torch.randn(1, 16, 8, 12)).shape == (64, 96, 3)


def test_a_family_without_a_usable_tiny_decoder_gets_the_approximation(tmp_path):
    # FLUX.2: diffusers has no tiny decoder for it, whatever is in the folder.
    taef2 = _tiny_decoder(taesd_dir(tmp_path, "flux2-klein"), 32)
    flux2 = Previewer("flux2-klein", "taesd", taef2)
    assert flux2.method == "approximate"
    assert flux2(_flux2_packed(torch.randn(1, 32, 8, 12)), size=(96, 64)).shape == (8, 12, 3)
    # SD's 4-channel TAESD put in the FLUX.1 folder: not used on 16-channel latents.
    wrong = _tiny_decoder(taesd_dir(tmp_path, "flux1"), 4)
    assert Previewer("flux1", "taesd", wrong).method == "approximate"
    assert Previewer("sd3", "taesd", tmp_path / "missing").method == "approximate"


# -- the tiny models' own pipelines -----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_every_step_of_a_tiny_flow_model_previews_with_the_picture_s_aspect(tiny_models, family):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_models[family].folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    previewer = Previewer(family, "approximate")
    for width, height in ((64, 64), (96, 64)):
        previews = []

        def on_step_end(pipe, index, timestep, tensors):
            previews.append(previewer(tensors["latents"], size=(width, height)))
            return {}

        pipe(prompt="a red apple", width=width, height=height, num_inference_steps=2, output_type="latent",
             generator=torch.Generator().manual_seed(1), callback_on_step_end=on_step_end)
        assert len(previews) == 2
        for preview in previews:
            assert preview.dtype == np.uint8 and preview.shape == (height // 8, width // 8, 3)
