"""The Models window lists the upscaler folders' files, other apps' too, by kind, architecture and scale as the
engine's spandrel reading tells them: a scale-1 model whose key names look like an upscaler's is a restorer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from desktop.core import settings as settings_store
from desktop.engine import upscale
from desktop.ui.main_window import read_upscaler
from desktop.ui.models import ModelsDialog
from tests.ui.test_models_dialog import rows

TIMEOUT = 30_000


def tiny_esrgan(scale: int) -> dict:
    """An old-layout ESRGAN (model.0, model.1.sub.N.RDB1..., ...) with 8 features and one block."""
    upscale.import_spandrel()
    from spandrel.architectures.ESRGAN.__arch.RRDB import RRDBNet

    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in RRDBNet(num_filters=8, num_blocks=1, scale=scale).state_dict().items()}


def tiny_restoreformer() -> dict:
    upscale.import_spandrel()
    from spandrel.architectures.RestoreFormer.__arch.restoreformer_arch import RestoreFormer

    model = RestoreFormer(n_embed=8, embed_dim=32, ch=32, ch_mult=(1, 1), num_res_blocks=1, z_channels=32)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


@pytest.fixture
def webui(tmp_path) -> Path:
    """An AUTOMATIC1111 install: its models folder, and its ESRGAN folder beside it with three files."""
    models = tmp_path / "stable-diffusion-webui" / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    esrgan = models / "ESRGAN"
    esrgan.mkdir()
    torch.save(tiny_esrgan(4), esrgan / "4x-Tiny.pth")
    save_file(tiny_esrgan(1), str(esrgan / "1x-Smooth.safetensors"))
    save_file(tiny_restoreformer(), str(esrgan / "RestoreFormer.safetensors"))
    return models / "Stable-diffusion"


def test_upscalers_in_other_apps_folders_are_listed_by_kind_architecture_and_scale(qtbot, webui):
    settings = settings_store.load()
    settings.models_folders = [str(webui)]
    dialog = ModelsDialog(settings, read_upscaler=read_upscaler)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
        dialog.show()
    shown = rows(dialog)
    assert {name: row["Family"] for name, row in shown.items()} == {
        "4x-Tiny": "ESRGAN x4",
        "1x-Smooth": "ESRGAN x1 restorer",
        "RestoreFormer": "RestoreFormer face restorer",
    }
    assert shown["1x-Smooth"]["Note"] == "a restorer (for Restore and `sfumato restore`), not a full model"
    assert shown["4x-Tiny"]["Note"] == "an upscaler (for Upscale and `sfumato upscale`), not a full model"
    assert shown["RestoreFormer"]["Note"] == "a face restorer (for fixing faces), not a full model"
    assert shown["4x-Tiny"]["Folder"].endswith("ESRGAN") and shown["4x-Tiny"]["Format"] == "ckpt"
    dialog.close()


def test_without_the_engine_the_header_tells_the_kind(qtbot, webui):
    settings = settings_store.load()
    settings.models_folders = [str(webui)]
    dialog = ModelsDialog(settings)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
        dialog.show()
    assert {name: row["Family"] for name, row in rows(dialog).items()} == {
        "4x-Tiny": "upscaler", "1x-Smooth": "upscaler", "RestoreFormer": "face restorer"}
    dialog.close()


def test_the_engine_reads_a_face_restorer_as_one_and_refuses_to_upscale_with_it(tmp_path):
    save_file(tiny_restoreformer(), str(tmp_path / "RestoreFormer.safetensors"))
    assert upscale.kind_of(tmp_path / "RestoreFormer.safetensors") == "face restorer"
    with pytest.raises(upscale.UpscalerError, match="it is a face restorer, not an upscaler"):
        upscale.read_model(tmp_path / "RestoreFormer.safetensors", "RestoreFormer")
