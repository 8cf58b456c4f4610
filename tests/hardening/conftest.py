from tests.ui.conftest import answer_dialogs, make_window  # noqa: F401 - the window fixtures, for the canvas cases
