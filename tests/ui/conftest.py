import pytest

from desktop.core import settings as settings_store


@pytest.fixture
def make_window(qtbot, request):
    """Open MainWindow; closes it and checks no thread survives.

    The window runs on a FakeBackend (the `fake_backend` fixture: no torch, the model is only a name), except
    in tests marked `engine`, which run the real engine end to end on the session's tiny SD1 model.
    """
    from desktop.ui.main_window import MainWindow

    on_engine = request.node.get_closest_marker("engine") is not None
    if not on_engine:
        request.getfixturevalue("fake_backend")
    windows = []

    def make(**overrides):
        settings = settings_store.load()
        settings.welcome_done = True  # tests of the welcome open it themselves
        if not windows and "model" not in overrides:
            if on_engine:
                settings.model = str(request.getfixturevalue("tiny_models")["sd1"].folder)
            else:
                settings.model = str(request.getfixturevalue("tmp_path") / "tiny-sd1")
        for key, value in overrides.items():
            setattr(settings, key, value)
        window = MainWindow(settings)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()  # keys go to the focused widget, as for a person at the screen
        qtbot.waitUntil(window.isActiveWindow, timeout=5000)
        window.start_engine()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
        assert window.worker._thread.isFinished(), "the worker thread is still running after close"


@pytest.fixture
def fake_backend(monkeypatch):
    """Windows made in this test run on a FakeBackend (tests/support/fake_backend.py) instead of the engine.

    No torch, no model: start-up, jobs and close take milliseconds. Returns the backend, so the test
    can set a step delay or a failure and see what it was asked. Tests about the engine itself don't use it.
    """
    from desktop.ui import main_window
    from tests.support.fake_backend import FakeBackend

    backend = FakeBackend()
    monkeypatch.setattr(main_window, "local_backend", backend.factory)
    return backend


@pytest.fixture(autouse=True)
def answer_dialogs(monkeypatch):
    """Modal questions would wait forever offscreen: unsaved changes are discarded, autosaves not restored.

    Tests that want another answer set `answers[...]`.
    """
    from desktop.ui.canvas.files import CanvasFiles

    answers = {"save_changes": "discard", "restore": False, "path": None}
    monkeypatch.setattr(CanvasFiles, "ask_save_changes", lambda self, action: answers["save_changes"])
    monkeypatch.setattr(CanvasFiles, "ask_restore", lambda self, when: answers["restore"])
    monkeypatch.setattr(CanvasFiles, "choose_path", lambda self, purpose: answers["path"])
    return answers


@pytest.fixture
def app_look(qapp):
    """Give the test the application; put its style, palette and widgets' styles back afterwards."""
    from PySide6.QtCore import QObject
    from PySide6.QtGui import QPalette

    from desktop.ui import theme

    style, palette = qapp.style().name(), QPalette(qapp.palette())
    yield qapp
    follower = qapp.findChild(QObject, "sfumatoThemeFollower")
    if follower is not None:
        follower.setParent(None)  # Python owns it now and drops it: the connection goes too
    hints = qapp.styleHints()
    if hasattr(hints, "unsetColorScheme"):
        hints.unsetColorScheme()
    if qapp.style().name() != style:
        qapp.setStyle(style)
    qapp.setPalette(palette)
    theme._restyle(qapp)


@pytest.fixture
def open_dialog(qtbot):
    """Open File > Settings on `settings` (default: fresh ones); closed with the test."""
    from desktop.core.settings import Settings
    from desktop.ui.settings_dialog import SettingsDialog

    def make(settings: Settings | None = None) -> SettingsDialog:
        dialog = SettingsDialog(settings or Settings())
        qtbot.addWidget(dialog)
        dialog.show()
        qtbot.waitExposed(dialog)
        return dialog

    return make
