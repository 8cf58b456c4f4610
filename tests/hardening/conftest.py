from tests.ui.conftest import answer_dialogs, fake_backend, make_window  # noqa: F401 - the window fixtures, for the canvas cases
