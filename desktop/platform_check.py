"""Before Qt starts on Linux: are the X11 (xcb) libraries its window plugin needs installed?

Without them Qt aborts with "Could not load the Qt platform plugin "xcb"", which
names no package. Qt 6.5 and later need libxcb-cursor0, which many desktops lack.
This check dlopens the libraries the way Qt would, so it is as exact as Qt's own
loader and costs a few milliseconds; it imports nothing but ctypes. The
library list is what PySide6's plugins/platforms/libqxcb.so and libQt6XcbQpa
need (readelf -d); tests/test_platform_check.py keeps it in step with the
installed PySide6. installer/linux/install.sh says the same before installing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

# soname -> the Debian/Ubuntu package that holds it
XCB_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
}


def uses_xcb(environ: Mapping[str, str]) -> bool:
    """Whether Qt will start its X11 plugin: QT_QPA_PLATFORM unset or xcb, and an X display to show on."""
    if not environ.get("DISPLAY"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    # On a Wayland session Qt picks its Wayland plugin and needs none of these.
    return not (environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"))


def missing_libraries(loads: Callable[[str], bool] | None = None) -> list[str]:
    """The sonames of XCB_LIBRARIES that cannot be loaded."""
    loads = loads or _loads
    return [name for name in XCB_LIBRARIES if not loads(name)]


def problem(environ: Mapping[str, str] | None = None, platform: str | None = None,
            loads: Callable[[str], bool] | None = None) -> str | None:
    """One sentence naming the packages to install when Qt's window plugin could not start, else None."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux") or not uses_xcb(environ):
        return None
    missing = missing_libraries(loads)
    if not missing:
        return None
    packages = " ".join(dict.fromkeys(XCB_LIBRARIES[name] for name in missing))
    return (f"Sfumato cannot open its window: Qt's X11 (xcb) support needs libraries that are missing "
            f"({', '.join(missing)}); on Debian or Ubuntu install them with: sudo apt install {packages}")


def _loads(name: str) -> bool:
    import ctypes

    bundled = [os.path.join(folder, name) for folder in _bundled_folders()]
    for candidate in (name, *(path for path in bundled if os.path.isfile(path))):
        try:
            ctypes.CDLL(candidate)
            return True
        except OSError:
            continue
    return False


def _bundled_folders() -> list[str]:
    """Where a copy shipped with Qt would be: a frozen app's folder, PySide6's own lib folder."""
    frozen = getattr(sys, "_MEIPASS", None)
    folders = [frozen, os.path.join(frozen, "PySide6", "Qt", "lib")] if frozen else []
    folders += [os.path.join(entry or ".", "PySide6", "Qt", "lib") for entry in sys.path]
    return [folder for folder in folders if os.path.isdir(folder)]
