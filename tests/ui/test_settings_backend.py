"""Settings > Backend: this computer or a Sfumato server (address, token), and its connection test.

The connection test runs against the server's real app (uvicorn on 127.0.0.1, tests/remote/conftest.py) over a
FakeBackend, and must never block the window while it waits.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QLineEdit
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from desktop.core.backend import ModelDescriptor
from desktop.core.postprocess import UPSCALE
from desktop.core.settings import Settings
from desktop.server.app import create_app
from desktop.ui.settings_dialog import NO_SERVER_ADDRESS, SERVER_ONLY_TIP
from tests.remote.conftest import serving, time_limit  # noqa: F401 - time_limit: every test here has a hard limit
from tests.support.fake_backend import FakeBackend
from tests.ui.test_settings_dialog import choose, click, type_into

WRONG_TOKEN = ("The server wants a token and this one is missing or wrong: set the token the server was started "
               "with.")


@contextmanager
def server(replicas: int = 1, token: str | None = None, delay: float = 0.0):
    """A Sfumato server over a FakeBackend with five models to paint with (and an upscaler, which is not one)."""
    catalogue = [ModelDescriptor(f"/srv/models/model{i}.safetensors", "sd1", f"model{i}") for i in range(4)]
    catalogue += [ModelDescriptor("demo", "sd1", "Demo model (random weights)"),
                  ModelDescriptor("/srv/upscalers/x4.pth", "upscaler", "x4", kinds=frozenset({UPSCALE}))]
    fake = FakeBackend(catalogue=catalogue)

    def count() -> int:  # run off the server's event loop: a slow answer, to show the window does not wait
        time.sleep(delay)
        return replicas

    with serving(create_app(lambda: fake, token=token, replicas=count)) as url:
        yield url


def test_the_choice_address_and_token_are_saved(open_dialog, qtbot):
    original = Settings(device="cpu", precision="fp32", model="dreamy")
    dialog = open_dialog(original)
    assert dialog.backend_choice.currentData() == "local" and not dialog.server_url.isEnabled()
    assert dialog.server_token.echoMode() == QLineEdit.EchoMode.Password
    assert "plain text" in dialog.server_token.toolTip()

    choose(qtbot, dialog.backend_choice, "server")
    assert not dialog.device.isEnabled() and not dialog.precision.isEnabled()
    assert dialog.device.toolTip() == dialog.precision.toolTip() == SERVER_ONLY_TIP
    type_into(qtbot, dialog.server_url, " http://gpu-box:7862 ")
    type_into(qtbot, dialog.server_token, "s3cret")
    click(qtbot, dialog.ok_button)

    assert dialog.result() == QDialog.DialogCode.Accepted
    edited = dialog.settings()
    assert (edited.server_url, edited.server_token) == ("http://gpu-box:7862", "s3cret")
    assert (edited.device, edited.precision, edited.model) == ("cpu", "fp32", "dreamy")
    assert original == Settings(device="cpu", precision="fp32", model="dreamy")


def test_a_saved_server_opens_chosen_and_this_computer_forgets_it(open_dialog, qtbot):
    dialog = open_dialog(Settings(server_url="http://gpu-box:7862", server_token="s3cret"))
    assert dialog.backend_choice.currentData() == "server"
    assert (dialog.server_url.text(), dialog.server_token.text()) == ("http://gpu-box:7862", "s3cret")
    choose(qtbot, dialog.backend_choice, "local")
    assert dialog.device.isEnabled() and dialog.device.toolTip() != SERVER_ONLY_TIP
    assert not dialog.server_url.isEnabled() and not dialog.test_button.isEnabled()
    click(qtbot, dialog.ok_button)
    assert (dialog.settings().server_url, dialog.settings().server_token) == ("", "")


def test_a_server_without_an_address_cannot_be_chosen(open_dialog, qtbot):
    dialog = open_dialog()
    choose(qtbot, dialog.backend_choice, "server")
    assert not dialog.ok_button.isEnabled()
    assert dialog.connection_message.isVisible() and dialog.connection_message.text() == NO_SERVER_ADDRESS
    type_into(qtbot, dialog.server_url, "ftp://gpu-box")
    assert not dialog.ok_button.isEnabled() and "write it as http://host:port" in dialog.connection_message.text()
    type_into(qtbot, dialog.server_url, "gpu-box:7862")
    assert dialog.ok_button.isEnabled() and not dialog.connection_message.isVisible()


def test_fp16_on_the_cpu_does_not_block_a_server(open_dialog, qtbot):
    dialog = open_dialog(Settings(device="cpu", precision="fp16", server_url="http://gpu-box:7862"))
    assert dialog.ok_button.isEnabled() and not dialog.engine_problem.isVisible()


def test_the_connection_test_says_replicas_and_models_without_blocking(open_dialog, qtbot):
    with server(replicas=2, delay=3.0) as url:  # far longer than the click may take on a busy machine
        dialog = open_dialog(Settings(server_url=url))
        began = time.monotonic()
        click(qtbot, dialog.test_button)
        assert time.monotonic() - began < 1.0, "the window waited for the server"
        assert dialog.connection_message.text() == f"Asking the server at {url}..."
        assert not dialog.test_button.isEnabled()
        qtbot.waitUntil(lambda: dialog.connection_message.text().startswith("Connected"), timeout=10_000)
        assert dialog.connection_message.text() == f"Connected to the server at {url}: 2 replicas, 5 models."
        assert dialog.connection_message.isVisible() and dialog.test_button.isEnabled()


def test_the_focus_stays_on_test_connection(open_dialog, qtbot):
    with server() as url:
        dialog = open_dialog(Settings(server_url=url))
        dialog.activateWindow()
        qtbot.waitUntil(dialog.isActiveWindow, timeout=5000)
        dialog.test_button.setFocus()
        qtbot.keyClick(dialog.test_button, Qt.Key.Key_Space)  # as a keyboard user presses it
        qtbot.waitUntil(lambda: dialog.connection_message.text().startswith("Connected"), timeout=10_000)
        assert dialog.test_button.hasFocus(), "the answer left the focus in the token field"


def test_a_wrong_token_is_said(open_dialog, qtbot):
    with server(token="right") as url:
        dialog = open_dialog(Settings(server_url=url, server_token="wrong"))
        click(qtbot, dialog.test_button)
        qtbot.waitUntil(lambda: dialog.connection_message.text() == WRONG_TOKEN, timeout=10_000)
        type_into(qtbot, dialog.server_token, "right")
        assert not dialog.connection_message.isVisible(), "an answer about the old token is not shown"
        click(qtbot, dialog.test_button)
        qtbot.waitUntil(lambda: dialog.connection_message.text() ==
                        f"Connected to the server at {url}: 1 replica, 5 models.", timeout=10_000)


def test_a_server_that_is_not_there_is_said(open_dialog, qtbot):
    with server() as url:
        pass  # stopped: nothing answers at its port any more
    dialog = open_dialog(Settings(server_url=url))
    click(qtbot, dialog.test_button)
    qtbot.waitUntil(lambda: "cannot be reached" in dialog.connection_message.text(), timeout=10_000)
    assert dialog.connection_message.text().startswith(f"The Sfumato server at {url} cannot be reached")


def test_another_web_server_is_not_taken_for_sfumato(open_dialog, qtbot):
    other = Starlette(routes=[Route("/", lambda request: PlainTextResponse("hello"))])
    with serving(other) as url:
        dialog = open_dialog(Settings(server_url=url))
        click(qtbot, dialog.test_button)
        qtbot.waitUntil(lambda: "Sfumato server?" in dialog.connection_message.text(), timeout=10_000)
    assert dialog.connection_message.text() == f"The server at {url} answered 404 Not Found; is it a Sfumato server?"


def test_enter_in_the_address_field_accepts_rather_than_testing(open_dialog, qtbot):
    dialog = open_dialog()
    choose(qtbot, dialog.backend_choice, "server")
    type_into(qtbot, dialog.server_url, "http://gpu-box:7862")
    qtbot.keyClick(dialog.server_url, Qt.Key.Key_Return)
    assert dialog.result() == QDialog.DialogCode.Accepted
