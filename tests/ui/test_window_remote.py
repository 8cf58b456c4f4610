"""The window pointed at a Sfumato server (Settings > Backend): the server's models in the picker, generation with
step previews, cancel, pictures saved here with their metadata, and failures said in a sentence.

The server is the real app (uvicorn on 127.0.0.1, tests/remote/conftest.py) over a FakeBackend; the window's own
engine is the `fake_backend` fixture's, which must stay unused while a server is chosen.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from PIL import Image
from PySide6.QtWidgets import QDialog

from desktop.core.backend import ModelDescriptor
from desktop.core.errors import Cancelled
from desktop.core.infotext import parse_infotext
from desktop.core.postprocess import UPSCALE
from desktop.server.app import create_app
from desktop.ui import main_window
from tests.remote.conftest import RecordingBackend, serving, time_limit  # noqa: F401 - time_limit: every test here has a hard limit
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request

TIMEOUT = 20_000
DEMO = ModelDescriptor("demo", "sd1", "Demo model (random weights)")
CATALOGUE = [ModelDescriptor("/srv/models/dreamy.safetensors", "sdxl", "dreamy"), DEMO,
             ModelDescriptor("/srv/upscalers/x4.pth", "upscaler", "x4", kinds=frozenset({UPSCALE}))]


class ServerFake(RecordingBackend):
    """The server's engine with a catalogue of its own."""

    def __init__(self, **options):
        super().__init__(catalogue=list(CATALOGUE), **options)


@contextmanager
def server(fake: FakeBackend, token: str | None = None):
    with serving(create_app(lambda: fake, token=token)) as url:
        yield url


def listed(window) -> list[tuple[str, str, str]]:
    box = window.panel.model
    return [(box.itemText(i), *box.itemData(i)) for i in range(box.count()) if box.itemData(i)]  # no headings


def small(window, **fields):
    base = {"prompt": "a lighthouse", "steps": 4, "width": 64, "height": 64, "seed": 3, "model": "dreamy"}
    window.panel.set_request(make_request(**{**base, **fields}))


def test_the_picker_lists_the_server_s_models_and_choosing_one_loads_it_there(make_window, fake_backend, qtbot):
    fake = ServerFake()
    with server(fake) as url:
        window = make_window(server_url=url, model="demo")
        qtbot.waitUntil(lambda: listed(window) == [("dreamy", "dreamy", "sdxl"),
                                                  ("Demo model (random weights)", "demo", "sd1")], timeout=TIMEOUT)
        assert window.panel.model_ref() == "dreamy", "a real model of the server's beats its demo"
        assert window.panel.family() == "sdxl" and window.panel.presets.itemText(1) == "1024 x 1024"
        qtbot.waitUntil(lambda: fake.loads[-1:] == ["/srv/models/dreamy.safetensors"], timeout=TIMEOUT)
        qtbot.waitUntil(lambda: window.device_label.text() == f"Device: server at {url}", timeout=TIMEOUT)
        window.panel.model.setCurrentIndex(1)  # a person's pick: the panel says model_changed
        qtbot.waitUntil(lambda: fake.loads[-1:] == ["demo"], timeout=TIMEOUT)
    assert fake_backend.started == 0 and fake_backend.loads == [], "this computer's engine was not used"


def test_a_generation_on_the_server_previews_and_is_saved_here_with_its_metadata(make_window, fake_backend, qtbot):
    fake = ServerFake()
    with server(fake) as url:
        window = make_window(server_url=url, model="dreamy")
        qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
        small(window, prompt="a lighthouse, dusk")
        previews = []
        window.worker.step.connect(lambda job, i, n, preview: previews.append((i, n, preview is not None)))
        with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
            window.generate()
    (image, seed, path), = shown.args[0]
    assert previews == [(i, 4, True) for i in range(1, 5)]
    assert seed == 3 and path and path.is_relative_to(window.settings.output_path())
    info = parse_infotext(Image.open(path).text["parameters"])
    assert info.prompt == "a lighthouse, dusk" and info.params["Seed"] == "3" and info.params["Model"] == "dreamy.safetensors"
    qtbot.waitUntil(lambda: window.gallery.model.rowCount() == 1, timeout=TIMEOUT)
    assert len(window.generation.staged) == 1
    assert [job.request.conditioning.prompt for job in fake.jobs] == ["a lighthouse, dusk"] and fake_backend.jobs == []


def test_cancel_stops_the_server_s_job(make_window, qtbot):
    fake = ServerFake(step_delay=0.2)
    with server(fake) as url:
        window = make_window(server_url=url, model="dreamy")
        small(window, steps=50)
        steps = []
        window.worker.step.connect(lambda job, i, n, preview: steps.append(i))
        job, = window.generate()
        qtbot.waitUntil(lambda: len(steps) >= 2, timeout=TIMEOUT)
        with qtbot.waitSignal(window.worker.job_cancelled, timeout=TIMEOUT) as cancelled:
            window.cancel()
        assert cancelled.args == [job]
        assert fake.ended.wait(5) and isinstance(fake.outcome, Cancelled), "the server's engine kept going"
    assert len(fake.steps) < 10 and window.progress.format() == "Cancelled"
    assert list(window.settings.output_path().rglob("*.png")) == []


def test_a_server_that_is_not_there_is_a_sentence_not_a_hang(make_window, fake_backend, qtbot):
    with server(ServerFake()) as url:
        pass  # stopped: nothing answers at its port
    window = make_window(server_url=url, model="demo")
    qtbot.waitUntil(lambda: window.error_banner.isVisible(), timeout=TIMEOUT)
    assert window.error_banner.text().startswith(f"The Sfumato server at {url} cannot be reached")
    assert window.statusBar().currentMessage() == window.error_banner.text()
    job, = window.generate()
    with qtbot.waitSignal(window.worker.job_failed, timeout=TIMEOUT) as failed:
        pass
    assert failed.args[0] == job and "cannot be reached" in failed.args[1]
    assert fake_backend.started == 0


def test_a_wrong_token_is_said_in_the_window(make_window, qtbot):
    with server(ServerFake(), token="right") as url:
        window = make_window(server_url=url, server_token="wrong", model="demo")
        qtbot.waitUntil(lambda: "token" in window.statusBar().currentMessage(), timeout=TIMEOUT)
    assert window.statusBar().currentMessage() == ("The server wants a token and this one is missing or wrong: set "
                                                   "the token the server was started with.")


def test_choosing_a_server_in_settings_starts_the_worker_over_there(make_window, fake_backend, qtbot, monkeypatch):
    fake = ServerFake()
    with server(fake) as url:
        window = make_window(model="demo")
        qtbot.waitUntil(lambda: fake_backend.started == 1, timeout=TIMEOUT)
        edited = window.settings.__class__(**{**window.settings.__dict__, "server_url": url})

        class Accepting:  # Settings > Backend > A Sfumato server, then OK
            def __init__(self, settings, parent):
                pass

            def exec(self):
                return QDialog.DialogCode.Accepted

            def settings(self):
                return edited

        monkeypatch.setattr(main_window, "SettingsDialog", Accepting)
        window.open_settings()
        qtbot.waitUntil(lambda: ("dreamy", "dreamy", "sdxl") in listed(window), timeout=TIMEOUT)
        qtbot.waitUntil(lambda: fake.loads[-1:] == ["/srv/models/dreamy.safetensors"], timeout=TIMEOUT)
        assert fake_backend.closed == 1, "this computer's engine was let go"
        small(window)
        with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
            window.generate()
    assert len(fake.jobs) == 1 and fake_backend.jobs == []
    assert window.device_label.text() == f"Device: server at {url}"
