"""Restorers told apart from upscalers by their key names (nothing loaded), and the diffusion restore of the
canvas's picture: an img2img of the whole picture at strength 0.25 with the panel's model and prompt."""

import numpy as np
from safetensors.numpy import save_file

from desktop.core import modelfiles, paths
from desktop.core.document import CanvasDocument, ImageLayer
from desktop.core.frame import restore_request
from desktop.core.geometry import Extent
from desktop.core.postprocess import list_restorers, list_upscalers
from desktop.core.request import GenerationRequest, Sampling


def weights(*names, last=None):
    found = {name: np.zeros((8, 8, 3, 3), np.float32) for name in names}
    if last:
        found[last[0]] = np.zeros(last[1], np.float32)
    return found


LAYOUTS = {
    "1x-DnCNN": (weights("model.0.weight", "model.2.weight", "model.4.weight"), "restorer"),
    "SCUNet": (weights("m_head.0.weight", "m_body.0.weight", "m_tail.0.weight"), "restorer"),
    "NAFNet": (weights("intro.weight", "ending.weight", "middle_blks.0.conv1.weight"), "restorer"),
    "1x-Compact": (weights("body.0.weight", "body.1.weight", last=("body.4.weight", (3, 8, 3, 3))), "restorer"),
    "4x-Compact": (weights("body.0.weight", "body.1.weight", last=("body.4.weight", (48, 8, 3, 3))), "upscaler"),
    "4x-ESRGAN": (weights("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight", "model.2.weight",
                          "model.4.weight"), "upscaler"),
}


def test_restorers_are_told_from_upscalers_by_their_layout(tmp_path):
    folder = paths.models_dir() / "restorers"
    folder.mkdir(parents=True)
    for name, (tensors, _) in LAYOUTS.items():
        save_file(tensors, str(folder / f"{name}.safetensors"))
    assert {name: modelfiles.identify(folder / f"{name}.safetensors").kind for name in LAYOUTS} == \
        {name: kind for name, (_, kind) in LAYOUTS.items()}
    (folder / "broken.pth").write_bytes(b"\x80\x02garbage")
    assert sorted(list_restorers([])) == ["1x-Compact", "1x-DnCNN", "NAFNet", "SCUNet"]
    assert "4x-ESRGAN" in list_upscalers([]) and "broken" in list_upscalers([])


def test_the_diffusion_restore_is_a_detail_pass_over_the_whole_picture_at_low_strength():
    doc = CanvasDocument(Extent(96, 64))
    base = GenerationRequest(model="my.safetensors", sampling=Sampling(batch_size=4, strength=0.75))
    assert restore_request(doc, base) is None, "an empty canvas has nothing to restore"
    top = np.zeros((64, 96, 4), np.uint8)
    top[:32] = (200, 10, 10, 255)  # the lower half transparent: flattened over white paper
    doc.add_layer(ImageLayer(top, "top"))
    request = restore_request(doc, base, "denoise")
    assert request.restore == "denoise" and request.scale == 1 and request.upscaler == "Lanczos"
    detail = request.detail
    assert detail.model == "my.safetensors" and detail.sampling.strength == 0.25 and detail.sampling.batch_size == 1
    image = request.image
    assert image.shape == (64, 96, 3) and tuple(image[0, 0]) == (200, 10, 10) and tuple(image[-1, -1]) == (255,) * 3
    request.validated()


def test_a1111s_names_of_the_upscalers_it_downloads_find_their_files():
    """A1111 writes `Hires upscaler: R-ESRGAN 4x+` for its RealESRGAN_x4plus.pth: Use all parameters finds it."""
    from pathlib import Path

    from desktop.core.postprocess import match_upscaler, with_params

    files = {"RealESRGAN_x4plus": Path("a/RealESRGAN_x4plus.pth"), "4x-UltraSharp": Path("b/4x-UltraSharp.pth"),
             "scunet": Path("c/ScuNET.pth")}
    assert match_upscaler("R-ESRGAN 4x+", files) == "RealESRGAN_x4plus"
    assert match_upscaler("ScuNET GAN", files) == "scunet"
    assert match_upscaler("4x-ultrasharp", files) == "4x-UltraSharp"
    assert match_upscaler("R-ESRGAN 4x+ Anime6B", files) is None
    assert with_params("a cat, Steps: 20", ()) == "a cat, Steps: 20"
