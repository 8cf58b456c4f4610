"""The window on a Sfumato server offers the server's add-on models, not this computer's files: the Upscale and
Restore dialogs, the hires fix's upscalers and the control layers' ControlNets and IP-Adapters list what the server's
GET /models lists, by its names, and the jobs sent carry those names (which the server resolves and runs).

The server is the real app (uvicorn on 127.0.0.1, tests/remote/conftest.py) over a FakeBackend; this computer's
folders hold files of each kind too, which must not be offered.
"""

from __future__ import annotations

from contextlib import contextmanager

from desktop.core import controlnets, paths, references
from desktop.core.backend import GenerationJob, ModelDescriptor, UpscaleJob
from desktop.core.faces import DEMO_FACE_RESTORER_NAME
from desktop.core.postprocess import DEMO_RESTORER_NAME, DEMO_UPSCALER_NAME, UPSCALE
from desktop.server.app import create_app
from desktop.ui import main_window
from tests.remote.conftest import serving, time_limit  # noqa: F401 - time_limit: every test here has a hard limit
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request
from tests.ui.test_control_layers import add_control
from tests.ui.test_restore_ui import ask_restore, choose_model
from tests.ui.test_upscale_ui import ask_upscale
from tests.ui.test_canvas import open_photo, photo

TIMEOUT = 20_000
UP = frozenset({UPSCALE})
CATALOGUE = [ModelDescriptor("/srv/models/dreamy.safetensors", "sd1", "dreamy"),
             ModelDescriptor("demo", "sd1", "Demo model (random weights)"),
             ModelDescriptor("/srv/upscalers/x4.pth", "upscaler", "x4", kinds=UP),
             ModelDescriptor("/srv/upscalers/1x-Clean.pth", "restorer", "1x-Clean", kinds=UP),
             ModelDescriptor("/srv/upscalers/GFPGANv1.4.pth", "face restorer", "GFPGANv1.4", kinds=UP),
             ModelDescriptor("demo", "upscaler", DEMO_UPSCALER_NAME, kinds=UP),
             ModelDescriptor("demo-restorer", "restorer", DEMO_RESTORER_NAME, kinds=UP),
             ModelDescriptor("/srv/controlnet/control_canny.safetensors", "controlnet", "control_canny",
                             kinds=frozenset({"controlnet"})),
             ModelDescriptor("demo", "controlnet", "Demo ControlNet (random weights)", kinds=frozenset({"controlnet"})),
             ModelDescriptor("/srv/ipadapter/ip-adapter_sd15.safetensors", "ipadapter", "ip-adapter_sd15",
                             kinds=frozenset({"ipadapter"}))]


@contextmanager
def server():
    fake = FakeBackend(catalogue=list(CATALOGUE))
    with serving(create_app(lambda: fake)) as url:
        yield fake, url


def local_files() -> None:
    """One file of each kind in this computer's folders: none of them may be offered while a server is chosen."""
    upscalers = paths.models_dir() / "upscalers"
    upscalers.mkdir(parents=True, exist_ok=True)
    (upscalers / "4x-Local.pth").write_bytes(b"x")
    controlnets.own_folder().mkdir(parents=True, exist_ok=True)
    (controlnets.own_folder() / "control_local.safetensors").write_bytes(b"x")
    references.own_folder().mkdir(parents=True, exist_ok=True)
    (references.own_folder() / "ip-adapter_local.safetensors").write_bytes(b"x")


def on_server(make_window, qtbot, url):
    local_files()
    window = make_window(server_url=url, model="dreamy")
    qtbot.waitUntil(lambda: bool(window.model_lists.upscalers), timeout=TIMEOUT)
    return window


def test_the_upscale_dialog_lists_the_server_s_upscalers_and_the_job_names_one(make_window, fake_backend, qtbot):
    with server() as (fake, url):
        window = on_server(make_window, qtbot, url)
        open_photo(window, photo(64, 48))
        offered = {}

        def choose(dialog):
            box = dialog.upscaler_box
            offered["labels"] = [box.itemText(i) for i in range(box.count())]
            box.setCurrentIndex(box.findText("x4"))

        with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
            ask_upscale(window, qtbot, choose)
    assert offered["labels"] == ["x4", DEMO_UPSCALER_NAME, "Lanczos (no model)", "Nearest (no model)"]
    job, = [job for job in fake.jobs if isinstance(job, UpscaleJob)]
    assert job.request.upscaler == "/srv/upscalers/x4.pth", "sent as the server's name, resolved there"
    (image, _seed, _path), = shown.args[0]
    assert image.shape[:2] == (96, 128) and fake_backend.jobs == []


def test_the_restore_dialog_lists_the_server_s_restorers_and_face_restorers(make_window, fake_backend, qtbot):
    with server() as (fake, url):
        window = on_server(make_window, qtbot, url)
        open_photo(window, photo(64, 48))
        faces = []

        def choose(dialog):
            faces.extend(dialog.face_box.itemText(i) for i in range(dialog.face_box.count()))
            choose_model("1x-Clean")(dialog)

        with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
            seen = ask_restore(window, qtbot, choose)
    assert seen["models"] == ["1x-Clean", DEMO_RESTORER_NAME, "Diffusion (the panel's model, strength 0.25)"]
    assert seen["chosen"] == "1x-Clean", "a restorer of the server's is chosen first"
    assert faces == ["GFPGANv1.4", DEMO_FACE_RESTORER_NAME, "None"]
    job, = [job for job in fake.jobs if isinstance(job, UpscaleJob)]
    assert job.request.upscaler == "/srv/upscalers/1x-Clean.pth" and job.request.restore
    assert fake_backend.jobs == []


def test_the_hires_fix_lists_the_server_s_upscalers_and_runs_with_one(make_window, fake_backend, qtbot):
    with server() as (fake, url):
        window = on_server(make_window, qtbot, url)
        panel = window.panel
        names = [panel.hires_upscaler.itemText(i) for i in range(panel.hires_upscaler.count())]
        assert "x4" in names and "4x-Local" not in names
        assert "1x-Clean" not in names and "GFPGANv1.4" not in names, "restorers do not enlarge"
        qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
        panel.set_request(make_request(prompt="a lighthouse", steps=2, width=64, height=64, seed=3, model="dreamy"))
        panel.hires_check.setChecked(True)
        panel.hires_upscaler.setCurrentText("x4")
        panel.hires_scale.setValue(1.5)
        with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
            assert window.generate(), window.error_banner.text()
    job, = [job for job in fake.jobs if isinstance(job, GenerationJob)]
    assert job.request.hires.enabled and job.request.hires.upscaler == "/srv/upscalers/x4.pth"
    assert fake_backend.jobs == []


def test_control_layers_list_the_server_s_controlnets_and_ip_adapters(make_window, fake_backend, qtbot):
    with server() as (fake, url):
        window = on_server(make_window, qtbot, url)
        controls = window.layers.controls
        box = controls.model
        open_photo(window, photo(64, 64))
        add_control(window, "style")
        assert [box.itemText(i) for i in range(box.count())] == ["demo", "ip-adapter_sd15"]
        layer = add_control(window, "canny")
        assert [box.itemText(i) for i in range(box.count())] == ["demo", "control_canny"]
        box.setCurrentIndex(1)
        box.activated.emit(1)  # as a person's pick
        assert layer.control.model == "control_canny"
        layer.writable()[8:24, 8:24] = 255
        window.panel.set_request(make_request(prompt="a house", steps=2, width=64, height=64, model="dreamy"))
        with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
            assert window.generate(), window.error_banner.text()
    job, = [job for job in fake.jobs if isinstance(job, GenerationJob)]
    assert [control.model for control in job.request.controls] == ["/srv/controlnet/control_canny.safetensors"]
    assert fake_backend.jobs == []


def test_the_demo_banner_speaks_of_the_server_s_folders(make_window, qtbot):
    with server() as (_fake, url):
        window = make_window(server_url=url, model="demo")
        box = window.panel.model
        qtbot.waitUntil(lambda: box.count() == 2, timeout=TIMEOUT)  # the server's dreamy and demo
        box.setCurrentIndex(next(i for i in range(box.count()) if box.itemData(i)[0] == "demo"))
        qtbot.waitUntil(window.demo_banner.isVisible, timeout=TIMEOUT)
    text = window.demo_banner.text()
    assert text == main_window.SERVER_DEMO_NOTICE.format(server=url)
    assert "server's models folder" in text and "Models > Open models folder" not in text
