"""Which listed model "Use all parameters" chooses for a picture (desktop/core/gallery/metadata.py match_model)."""

from desktop.core.gallery.metadata import ImageMeta, PictureModel, match_model, picture_model

LISTED = [("/m/flux1-dev.safetensors", "flux1-dev"), ("/m/juggernautXL_v8.safetensors", "juggernautXL_v8"),
          ("demo", "SD 1.x demo"), ("demo:flux1", "FLUX.1 demo")]


def test_a_sfumato_picture_names_its_exact_model():
    meta = ImageMeta(model="tiny-flux1", source="sfumato", request={"model": "demo:flux1"},
                     parameters="a fox\nSteps: 4, Model hash: 0123456789, Model: tiny-flux1")
    assert picture_model(meta) == PictureModel("demo:flux1", "tiny-flux1", "0123456789")
    assert match_model(picture_model(meta), LISTED) == "demo:flux1"


def test_other_pictures_find_their_model_by_hash_first_then_by_name():
    hashes = {"/m/juggernautXL_v8.safetensors": "abcdef0123"}
    by_hash = PictureModel(name="renamed", hash="abcdef01")  # A1111's old 8-digit hash
    assert match_model(by_hash, LISTED, lambda ref: hashes.get(ref, "")) == "/m/juggernautXL_v8.safetensors"
    assert match_model(PictureModel(name="flux1-dev.safetensors"), LISTED) == "/m/flux1-dev.safetensors"
    assert match_model(PictureModel(name="tiny-sd1"), LISTED) == "demo"  # the demo model's name in its pictures
    assert match_model(PictureModel(ref="/elsewhere/flux1-dev.safetensors"), LISTED) == "/m/flux1-dev.safetensors"
    assert match_model(PictureModel(name="sd_xl_base_1.0", hash="99999999"), LISTED) is None
