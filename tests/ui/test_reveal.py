"""Show in folder: the file manager opens with the picture selected, or at least the folder opens."""

import stat
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QProcess, Qt

from desktop.ui import reveal
from tests.ui.test_gallery import first_record, gallery_of

TIMEOUT = 10_000


@pytest.fixture
def opened(monkeypatch):
    """The folders QDesktopServices was asked to open."""
    folders = []
    monkeypatch.setattr(reveal.QDesktopServices, "openUrl", lambda url: folders.append(Path(url.toLocalFile())))
    return folders


def fake_dbus_send(folder: Path, monkeypatch, exit_code: int) -> Path:
    """A dbus-send on PATH that writes its arguments to a file and exits with `exit_code`."""
    folder.mkdir()
    log = folder / "args.txt"
    script = folder / "dbus-send"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\nexit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(folder))
    return log


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the freedesktop way is for Linux and the BSDs")
def test_a_file_manager_that_answers_selects_the_file(tmp_path, monkeypatch, opened, qtbot):
    picture = tmp_path / "pictures" / "00001-5, a fox.png"
    picture.parent.mkdir()
    picture.write_bytes(b"png")
    log = fake_dbus_send(tmp_path / "bin", monkeypatch, exit_code=0)
    owner = QObject()
    reveal.reveal(picture, owner)
    qtbot.waitUntil(lambda: not owner.findChildren(QProcess), timeout=TIMEOUT)  # finished, and deleted
    args = log.read_text().splitlines()
    assert "org.freedesktop.FileManager1.ShowItems" in args and "--dest=org.freedesktop.FileManager1" in args
    uri = next(a for a in args if a.startswith("array:string:")).removeprefix("array:string:")
    assert "," not in uri, "dbus-send would split the name at its comma"
    assert uri.endswith("00001-5%2C%20a%20fox.png") and uri.startswith("file:///")
    assert opened == [], "nothing else opens when the file manager answered"


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the freedesktop way is for Linux and the BSDs")
def test_without_a_file_manager_that_answers_the_folder_opens(tmp_path, monkeypatch, opened, qtbot):
    picture = tmp_path / "a.png"
    picture.write_bytes(b"png")
    fake_dbus_send(tmp_path / "bin", monkeypatch, exit_code=1)  # "The name is not activatable"
    reveal.reveal(picture)
    qtbot.waitUntil(lambda: opened == [tmp_path], timeout=TIMEOUT)

    opened.clear()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no dbus-send at all
    reveal.reveal(picture)
    assert opened == [tmp_path]


@pytest.mark.parametrize(("platform", "command"), [
    ("win32", lambda p: ["explorer", f"/select,{p}"]),
    ("darwin", lambda p: ["open", "-R", str(p)]),
])
def test_windows_and_macos_ask_their_own_file_manager(tmp_path, monkeypatch, opened, platform, command):
    started = []
    monkeypatch.setattr(reveal.sys, "platform", platform)
    monkeypatch.setattr(reveal.subprocess, "Popen", lambda args: started.append(args))
    picture = tmp_path / "b.png"
    reveal.reveal(picture)
    assert started == [command(picture)] and opened == []

    def missing(args):
        raise FileNotFoundError(args[0])

    monkeypatch.setattr(reveal.subprocess, "Popen", missing)
    reveal.reveal(picture)
    assert opened == [tmp_path]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the freedesktop way is for Linux and the BSDs")
def test_the_gallery_button_shows_the_selected_picture(make_window, qtbot, sfumato_home, tmp_path, monkeypatch,
                                                       opened):
    window, gallery = gallery_of(make_window, qtbot, sfumato_home, ["a lantern"])
    log = fake_dbus_send(tmp_path / "bin", monkeypatch, exit_code=0)
    gallery.select_row(0)
    qtbot.mouseClick(gallery.buttons["folder"], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: log.exists() and "ShowItems" in log.read_text(), timeout=TIMEOUT)
    name = gallery.store.path(first_record(gallery)).name
    assert any(a.startswith("array:string:file:///") and a.endswith(name) for a in log.read_text().splitlines())
    qtbot.waitUntil(lambda: not gallery.findChildren(QProcess), timeout=TIMEOUT)  # done, and deleted
    assert opened == []
