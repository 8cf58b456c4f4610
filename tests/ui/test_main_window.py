"""The window as a person uses it: type, Ctrl+Enter, watch previews, cancel, queue, restart."""

import shutil

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from desktop.core import settings as settings_store
from desktop.core.infotext import parse_infotext

from tests.support.requests import make_request

TIMEOUT = 60_000


def small(window, **fields):
    """Set the panel to a quick generation."""
    base = {"prompt": "", "steps": 4, "width": 64, "height": 64, "seed": 3, "sampler": "Euler a", "schedule": "Automatic"}
    window.panel.set_request(make_request(**{**base, **fields}))


@pytest.mark.engine
def test_ctrl_enter_generates_with_previews_and_saves(make_window, qtbot):
    window = make_window()
    small(window)
    previews = []
    window.worker.step.connect(lambda job, i, n, preview: previews.append((i, n, preview is not None)))
    qtbot.mouseClick(window.panel.prompt, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(window.panel.prompt, "a lighthouse, dusk")
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        qtbot.keyClick(window.panel.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert window.panel.prompt.toPlainText() == "a lighthouse, dusk"  # Ctrl+Enter added no line
    assert previews == [(i, 4, True) for i in range(1, 5)]
    (image, seed, path), = shown.args[0]
    assert seed == 3 and len(window.generation.staged) == 1
    staged, frame = window.canvas.picture("staged")
    assert staged.width() == 64 and (frame.width, frame.height) == (64, 64)
    info = parse_infotext(Image.open(path).text["parameters"])
    assert info.prompt == "a lighthouse, dusk" and info.params["Seed"] == "3"
    assert window.progress.text().startswith("Done") or window.progress.format() == "Done"
    assert window.panel.reuse_seed.isEnabled()


@pytest.mark.engine
def test_escape_cancels_within_a_step_and_the_next_job_runs(make_window, qtbot):
    window = make_window()
    small(window, prompt="slow", steps=60, width=256, height=256)
    steps = []
    window.worker.step.connect(lambda job, i, n, preview: steps.append((job, i)))
    first, = window.generate()
    small(window, prompt="next")
    second, = window.generate()
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=TIMEOUT)
    with qtbot.waitSignal(window.worker.job_cancelled, timeout=TIMEOUT) as cancelled:
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert cancelled.args == [first]
    seen_at_cancel = len([s for s in steps if s[0] == first])
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        pass
    assert len([s for s in steps if s[0] == first]) == seen_at_cancel
    assert seen_at_cancel < 60
    assert [i for job, i in steps if job == second] == [1, 2, 3, 4]


def test_queue_shows_waiting_jobs_in_order_and_removes_one(make_window, fake_backend, qtbot):
    fake_backend.step_delay = 0.05  # the first job runs 2 s: the others wait in the queue
    window = make_window()
    small(window, prompt="first", steps=40, width=256, height=256)
    started = []
    window.worker.job_started.connect(lambda job, request: started.append(request.conditioning.prompt))
    window.generate()
    for prompt in ("second", "third", "fourth"):
        small(window, prompt=prompt)
        window.generate()
    qtbot.waitUntil(lambda: window.queue.list.count() == 3, timeout=TIMEOUT)
    texts = [window.queue.list.item(i).text() for i in range(3)]
    assert [t.split()[0] for t in texts] == ["second", "third", "fourth"]
    window.queue.list.setCurrentRow(1)
    qtbot.mouseClick(window.queue.remove_button, Qt.MouseButton.LeftButton)
    assert [window.queue.list.item(i).text().split()[0] for i in range(window.queue.list.count())] == ["second", "fourth"]
    window.cancel()
    qtbot.waitUntil(lambda: started == ["first", "second", "fourth"] and not window.worker.is_busy(), timeout=TIMEOUT)
    assert window.queue.list.count() == 0


def test_closing_during_a_generation_stops_the_worker(make_window, fake_backend, qtbot):
    fake_backend.step_delay = 0.05  # 100 steps: 5 s, so the window closes while it runs
    window = make_window()
    small(window, prompt="long", steps=100, width=256, height=256)
    steps = []
    window.worker.step.connect(lambda *args: steps.append(args))
    window.generate()
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=TIMEOUT)
    window.close()
    assert window.worker._thread.isFinished()


def test_panel_values_survive_a_restart(make_window, qtbot):
    window = make_window()
    small(window, prompt="keep me", steps=7, width=128, height=96, seed=1234, sampler="DDIM")
    window.panel.negative.setPlainText("blurry")
    window.panel.batch_count.setValue(3)
    window.close()
    again = make_window()
    request = again.panel.request()
    assert (request.conditioning.prompt, request.conditioning.negative_prompt, request.sampling.steps, request.sampling.seed) == ("keep me", "blurry", 7, 1234)
    assert (request.width, request.height, request.sampling.sampler) == (128, 96, "DDIM")
    assert again.panel.batch_count.value() == 3
    assert settings_store.load().model == request.model


def test_the_aspect_lock_survives_a_restart(make_window):
    window = make_window()
    window.panel.settings.set_size(768, 512)
    window.panel.aspect_lock.setChecked(True)
    window.close()
    again = make_window()
    assert again.panel.aspect_lock.isChecked() and again.panel.settings.aspect_locked
    again.panel.settings.width = 384
    assert again.panel.settings.height == 256  # locked to the ratio it was saved with


@pytest.mark.engine
def test_a_broken_model_shows_why_and_the_previous_one_keeps_working(make_window, qtbot, tiny_models, tmp_path):
    window = make_window()
    small(window, prompt="before")
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(tiny_models["sd1"].checkpoint.read_bytes()[:5000])
    good = window.panel.model_ref()
    window.panel.set_models([(good, "tiny", "sd1"), (str(broken), "broken", "sd1")], good)
    with qtbot.waitSignal(window.worker.model_failed, timeout=TIMEOUT):
        window.panel.model.setCurrentIndex(1)
    assert window.error_banner.isVisible() and "broken.safetensors" in window.error_banner.text()
    with qtbot.waitSignal(window.worker.job_failed, timeout=TIMEOUT):
        window.generate()
    window.panel.model.setCurrentIndex(0)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    assert not window.error_banner.isVisible()


def test_invalid_values_cannot_be_entered(make_window, qtbot, fake_backend):
    window = make_window()
    box = window.panel.width_box
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "100")
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)
    assert box.value() == 100, "any size can be typed: the frame can be any size"
    window.panel.steps.setValue(1000)
    assert window.panel.steps.value() == 150


@pytest.mark.engine
def test_changing_the_precision_restarts_the_engine_on_the_next_run(make_window, qtbot):
    window = make_window()
    small(window)
    devices = []
    window.worker.device_ready.connect(devices.append)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    settings = settings_store.load()
    settings.precision = "fp32"
    window.worker.update_settings(settings)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    assert devices and devices[-1].endswith("float32")


def test_settings_from_the_menu_are_saved_and_applied(make_window, qtbot, fake_backend):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QDialogButtonBox

    from desktop.ui.settings_dialog import SettingsDialog
    from desktop.ui.theme import apply_theme, is_dark

    window = make_window()

    def choose_dark():
        dialog = next(w for w in QApplication.topLevelWidgets() if isinstance(w, SettingsDialog) and w.isVisible())
        dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
        qtbot.mouseClick(dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok),
                         Qt.MouseButton.LeftButton)

    QTimer.singleShot(200, choose_dark)
    try:
        window.open_settings()
        assert settings_store.load().theme == "dark"
        assert is_dark(QApplication.instance().palette())
    finally:
        apply_theme(QApplication.instance(), "light")


def test_a_model_in_the_models_folder_is_found_and_preferred_over_the_demo(make_window, qtbot, tiny_models):
    from desktop.core import paths

    paths.models_dir().mkdir(parents=True)
    shutil.copy(tiny_models["sd1"].checkpoint, paths.models_dir() / "painter.safetensors")
    shutil.copytree(tiny_models["sd1"].config, paths.models_dir() / "painter.config")
    window = make_window(model="demo")
    qtbot.waitUntil(lambda: window.panel.model_ref().endswith("painter.safetensors"), timeout=TIMEOUT)
    assert window.panel.model.currentText() == "painter"
    assert not window.demo_banner.isVisible()
    labels = [window.panel.model.itemText(i) for i in range(window.panel.model.count())]
    assert labels == ["painter", "", "Demo models (random weights)", "SD 1.x demo", "SDXL demo", "Z-Image demo",
                      "FLUX.2 [klein] demo", "FLUX.1 demo", "SD 3.5 demo"]  # "": the separator


def test_seeds_above_two_to_the_31_are_reused_exactly(make_window, qtbot, fake_backend):
    window = make_window()
    window.panel.remember_seed(3_630_596_309)
    qtbot.mouseClick(window.panel.reuse_seed, Qt.MouseButton.LeftButton)
    assert window.panel.request().sampling.seed == 3_630_596_309
    window.panel.seed.clear()
    qtbot.keyClicks(window.panel.seed, "4294967295")
    qtbot.keyClick(window.panel.seed, Qt.Key.Key_Return)
    assert window.panel.request().sampling.seed == 4_294_967_295


def test_batch_count_with_a_fixed_seed_makes_different_pictures(make_window, qtbot):
    window = make_window()
    small(window, seed=100, batch_size=2)
    window.panel.batch_count.setValue(3)
    seeds = []
    window.worker.job_started.connect(lambda job, request: seeds.append(request.sampling.seed))
    window.generate()
    qtbot.waitUntil(lambda: len(seeds) == 3 and not window.worker.is_busy(), timeout=TIMEOUT)
    assert seeds == [100, 102, 104]


def test_a_failed_save_keeps_the_pictures_and_says_why(make_window, qtbot, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    window = make_window(output_folder=str(blocker))
    small(window)
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        window.generate()
    (image, seed, path), = shown.args[0]
    assert path is None and image.shape == (64, 64, 3)
    assert window.canvas.picture("staged") is not None and len(window.generation.staged) == 1
    qtbot.waitUntil(window.error_banner.isVisible, timeout=TIMEOUT)
    assert "could not be saved" in window.error_banner.text() and "disk is not full" in window.error_banner.text()


def test_presets_follow_the_chosen_model(make_window):
    window = make_window()
    window.panel.set_models([("a", "small", "sd1"), ("b", "big", "sdxl")], "a")
    assert window.panel.presets.itemText(1) == "512 x 512"
    window.panel.model.setCurrentIndex(1)
    assert window.panel.presets.itemText(1) == "1024 x 1024"


def test_a_sampler_without_schedules_gets_automatic(make_window):
    window = make_window()
    window.panel.set_request(make_request(sampler="Euler a"))  # default schedule is Karras
    request = window.panel.request()
    assert (request.sampling.sampler, request.sampling.schedule) == ("Euler a", "Automatic")
    request.validate()


def test_the_progress_bar_gives_the_speed_and_the_time_left(make_window, fake_backend, qtbot):
    fake_backend.step_delay = 0.02
    window = make_window()
    small(window, steps=6)
    texts = []
    window.worker.step.connect(lambda *_: texts.append(window.progress.format()))
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        window.generate()
    assert texts[0] == "Step 1/6"  # the first step warms up: no speed yet
    assert "it/s · ETA 0 s" in texts[-1] and texts[-1].startswith("Step 6/6")
    assert window.progress.format() == "Done" and window.jobs.jobs == {}
