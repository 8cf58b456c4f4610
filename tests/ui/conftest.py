import pytest

from desktop.core import settings as settings_store


@pytest.fixture
def make_window(qtbot, tiny_models):
    """Open MainWindow on the session's tiny SD1 model; closes it and checks no thread survives."""
    from desktop.ui.main_window import MainWindow

    windows = []

    def make(**overrides):
        settings = settings_store.load()
        if not windows and "model" not in overrides:
            settings.model = str(tiny_models["sd1"].folder)
        for key, value in overrides.items():
            setattr(settings, key, value)
        window = MainWindow(settings)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        window.start_engine()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
        assert window.worker._thread.isFinished(), "the worker thread is still running after close"
