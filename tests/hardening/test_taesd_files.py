"""A half-downloaded or corrupt TAESD folder: the full VAE decodes and the previews use the approximation, and the
status says in one sentence which folder could not be read and why; the picture is always made."""

from __future__ import annotations

import pytest
import torch

from desktop.core import paths
from desktop.core.progress import TaskState
from desktop.engine import generate
from desktop.engine.previews import Previewer
from tests.support.requests import make_request


def _config_only(folder):
    from diffusers import AutoencoderTiny

    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)).save_pretrained(folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()  # the download stopped after config.json


def _broken_json(folder):
    _config_only(folder)
    (folder / "config.json").write_text('{"_class_name": "AutoencoderTiny", "latent_chan')


def _truncated_weights(folder):
    _config_only(folder)
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"")


@pytest.mark.parametrize("damage", [_config_only, _broken_json, _truncated_weights])
def test_an_unreadable_taesd_falls_back_to_the_full_vae_and_the_approximation(cpu_manager, tiny_models, damage):
    folder = paths.models_dir() / "taesd"
    damage(folder)
    said = []
    previews = []
    request = make_request(prompt="p", model=str(tiny_models["sd1"].checkpoint), width=64, height=64, steps=2,
                           seed=1, decoder="tiny")
    results = generate.run(request, TaskState(on_step=lambda i, n, p: previews.append(p), on_status=said.append),
                           cpu_manager, "taesd")
    assert results[0].image.shape == (64, 64, 3)
    assert "Decoder" not in dict(results[0].params)
    decode = [s for s in said if s.startswith("The full VAE decoded the picture")]
    assert len(decode) == 1 and f"the TAESD in {folder} could not be read (" in decode[0]
    assert decode[0].endswith("); download its files again.")
    preview = [s for s in said if s.startswith("The previews use the approximation")]
    assert len(preview) == 1 and f"the TAESD in {folder} could not be read (" in preview[0]
    assert previews[0].shape == (8, 8, 3)  # latent-sized: the approximation
    # A full-VAE run with TAESD previews is made too, and the preview sentence is said once, not per run.
    again = []
    generate.run(make_request(prompt="p", model=str(tiny_models["sd1"].checkpoint), width=64, height=64, steps=2,
                              seed=1), TaskState(on_status=again.append), cpu_manager, "taesd")
    assert not [s for s in again if "could not be read" in s]


def test_a_previewer_given_an_unreadable_folder_uses_the_approximation(tmp_path):
    _broken_json(tmp_path / "taesd")
    previewer = Previewer("sd1", "taesd", tmp_path / "taesd")
    assert previewer.method == "approximate"
    assert previewer(torch.randn(1, 4, 8, 6)).shape == (8, 6, 3)
