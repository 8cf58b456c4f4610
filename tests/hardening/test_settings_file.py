"""A settings.json edited by hand (or by an older or newer Sfumato): the window still opens."""

import json

import pytest

from desktop.core import paths
from desktop.core.generation_settings import GenerationSettings


@pytest.mark.parametrize("last_request, field", [
    ({"sampling": {"steps": "20"}}, "steps"),
    ({"sampling": {"seed": 1.5}}, "seed"),
    ({"sampling": {"cfg_scale": None}}, "cfg_scale"),
    ({"width": "512"}, "width"),
    ({"conditioning": {"prompt": 5}}, "prompt"),
])
def test_a_bad_value_in_the_last_request_keeps_that_fields_default(make_window, last_request, field):
    saved = {**last_request, "height": 640, "conditioning": {"negative_prompt": "fog", **last_request.get(
        "conditioning", {})}}
    paths.settings_file().parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file().write_text(json.dumps({"last_request": saved}), encoding="utf-8")
    window = make_window()
    settings = window.panel.settings
    assert settings.get(field) == GenerationSettings.field(field).default
    assert (settings.height, settings.negative_prompt) == (640, "fog")  # the good values still come back
    assert (window.doc.extent.width, window.doc.extent.height) == (settings.width, settings.height)
    window.panel.request().validate()


def test_a_size_past_the_limit_is_brought_to_it(make_window):
    from desktop.core.request import MAX_SIZE

    paths.settings_file().parent.mkdir(parents=True, exist_ok=True)
    paths.settings_file().write_text(json.dumps({"last_request": {"width": 100000}}), encoding="utf-8")
    window = make_window()
    assert window.doc.extent.width == MAX_SIZE  # the panel then follows the canvas frame, as for any big canvas
    window.panel.request().validate()
