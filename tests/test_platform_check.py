"""A Linux desktop without Qt's xcb libraries gets one sentence naming the package, not Qt's abort."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from desktop import platform_check

X11 = {"DISPLAY": ":0"}


def finder(*missing):
    asked = []

    def loads(name):
        asked.append(name)
        return name not in missing

    loads.asked = asked
    return loads


def test_a_missing_xcb_cursor_names_the_package_to_install():
    message = platform_check.problem(X11, "linux", finder("libxcb-cursor.so.0"))
    assert message.endswith("sudo apt install libxcb-cursor0")
    assert "libxcb-cursor.so.0" in message and "\n" not in message


def test_every_missing_package_is_named_once():
    message = platform_check.problem(X11, "linux", finder("libxcb-cursor.so.0", "libxkbcommon-x11.so.0"))
    assert message.endswith("sudo apt install libxcb-cursor0 libxkbcommon-x11-0")


@pytest.mark.parametrize("environ, platform", [
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux"),
    ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland"}, "linux"),
    ({"DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, "linux"),
    ({}, "linux"),  # no X display: Qt says that itself
    (X11, "darwin"), (X11, "win32"),
])
def test_nothing_is_checked_where_qt_will_not_use_xcb(environ, platform):
    loads = finder("libxcb-cursor.so.0")
    assert platform_check.problem(environ, platform, loads) is None and loads.asked == []


@pytest.mark.parametrize("environ", [X11, {"DISPLAY": ":1", "QT_QPA_PLATFORM": "xcb"},
                                     {"DISPLAY": ":1", "QT_QPA_PLATFORM": "xcb:nomitshm"}])
def test_an_x11_start_is_checked_and_passes_when_all_libraries_load(environ):
    loads = finder()
    assert platform_check.problem(environ, "linux", loads) is None
    assert set(loads.asked) == set(platform_check.XCB_LIBRARIES)


def test_the_app_says_the_sentence_and_exits_1_before_qt_starts(monkeypatch, capsys):
    from desktop import app, diagnostics

    def qt_starts():
        raise AssertionError("the check let Qt start")

    monkeypatch.setattr(diagnostics, "setup", qt_starts)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    monkeypatch.setattr(platform_check, "_loads", finder("libxcb-cursor.so.0"))
    assert app.main([]) == 1
    assert capsys.readouterr().err.strip().endswith("sudo apt install libxcb-cursor0")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("readelf"), reason="Linux ELF tools")
def test_the_list_covers_what_the_installed_xcb_plugin_needs():
    import PySide6

    qt = Path(PySide6.__file__).parent / "Qt"
    needed = set()
    for binary in (qt / "plugins" / "platforms" / "libqxcb.so", qt / "lib" / "libQt6XcbQpa.so.6"):
        dynamic = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
        needed |= {line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line}
    x11 = {name for name in needed if name.startswith(("libxcb", "libX11", "libxkbcommon"))}
    assert x11 and x11 <= set(platform_check.XCB_LIBRARIES), x11 - set(platform_check.XCB_LIBRARIES)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")
def test_a_library_is_found_the_way_the_dynamic_loader_finds_it():
    assert platform_check._loads("libc.so.6") and not platform_check._loads("libsfumato-not-there.so.9")
