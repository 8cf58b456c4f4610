"""The installer's inputs are sound: icons render in every size, the desktop entry and Info.plist are valid.

Building and running the bundle itself takes minutes: `python installer/build.py --check` (see
installer/README.md; .ci/run does it after the tests).
"""

import configparser
import plistlib
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_icons_are_made_from_the_svg_in_every_size(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "installer" / "make_icons.py"), str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    for size in (16, 32, 48, 256, 1024):
        image = Image.open(tmp_path / f"sfumato-{size}.png")
        assert image.size == (size, size) and image.mode == "RGBA"
        assert image.getpixel((size // 2, size // 2))[3] == 255 and image.getpixel((0, 0))[3] == 0
    assert {(16, 16), (32, 32), (256, 256)} <= Image.open(tmp_path / "sfumato.ico").info["sizes"]
    assert Image.open(tmp_path / "sfumato.icns").size == (1024, 1024)


def test_the_linux_desktop_entry_is_complete():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(ROOT / "resources" / "linux" / "sfumato.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Name"] == "Sfumato"
    assert desktop["Exec"].startswith("sfumato") and desktop["Icon"] == "sfumato"
    assert desktop["Categories"].endswith(";") and "image/openraster" in desktop["MimeType"]


def test_the_macos_info_plist_names_the_app_and_its_documents():
    with open(ROOT / "installer" / "macos" / "Info.plist", "rb") as handle:
        info = plistlib.load(handle)
    assert info["CFBundleIdentifier"] == "app.sfumato.Sfumato" and info["NSHighResolutionCapable"]
    assert any("ora" in kind.get("CFBundleTypeExtensions", []) for kind in info["CFBundleDocumentTypes"])


def test_the_spec_and_scripts_point_at_files_that_exist():
    spec = (ROOT / "installer" / "sfumato.spec").read_text()
    assert '"main.py"' in spec and '"resources"' in spec and "console=False" in spec
    for path in ("installer/windows/sfumato.iss", "installer/macos/make_dmg.sh", "installer/linux/install.sh",
                 "installer/linux/uninstall.sh", "resources/icons/sfumato.svg", "LICENSE"):
        assert (ROOT / path).is_file(), path
