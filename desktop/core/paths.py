"""Where Sfumato keeps things. Every location comes from here.

By default the folders follow the platform's conventions (platformdirs). Setting
the environment variable ``SFUMATO_HOME`` puts all of them under one folder:
a portable install, and the way tests get fresh folders under tmp_path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

APP_NAME = "Sfumato"
HOME_ENV = "SFUMATO_HOME"


def _home() -> Path | None:
    value = os.environ.get(HOME_ENV)
    return Path(value) if value else None


def _dir(kind: str) -> Path:
    home = _home()
    if home is not None:
        return home / kind
    dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
    return Path(
        {
            "config": dirs.user_config_dir,
            "data": dirs.user_data_dir,
            "cache": dirs.user_cache_dir,
            "state": dirs.user_state_dir,
            "logs": dirs.user_log_dir,
        }[kind]
    )


def config_dir() -> Path:
    return _dir("config")


def data_dir() -> Path:
    return _dir("data")


def cache_dir() -> Path:
    return _dir("cache")


def state_dir() -> Path:
    return _dir("state")


def log_dir() -> Path:
    return _dir("logs")


def models_dir() -> Path:
    """The models folder Sfumato owns (the demo model lives here too)."""
    return data_dir() / "models"


def demo_model_dir() -> Path:
    return models_dir() / "demo"


def output_dir() -> Path:
    home = _home()
    if home is not None:
        return home / "outputs"
    return Path(platformdirs.user_pictures_dir()) / APP_NAME


def wildcards_dir() -> Path:
    """The person's own wildcards folder (``__name__`` in a prompt is a line of ``name.txt`` here)."""
    home = _home()
    return home / "wildcards" if home is not None else data_dir() / "wildcards"


def settings_file() -> Path:
    return config_dir() / "settings.json"


def queue_file() -> Path:
    """The queue that survives a restart (desktop/core/queue_store.py), beside the settings."""
    return config_dir() / "queue.sqlite"


def resources_dir() -> Path:
    """The bundled resources folder (beside the package, or inside a frozen bundle)."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def path_key(path: str | os.PathLike) -> str:
    """A folder's spelling for comparing: ~ expanded, made absolute, symlinks and .. resolved, no trailing
    separator, and case-folded where the file system ignores case (Windows, macOS)."""
    text = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        text = str(Path(text).resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL in the name: keep the plain spelling
        pass
    text = os.path.normcase(text)
    return text.casefold() if sys.platform == "darwin" else text


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two spellings name the same file or folder (typed two ways, linked, or differently cased)."""
    if path_key(a) == path_key(b):
        return True
    try:
        return os.path.samefile(os.path.expanduser(os.fspath(a)), os.path.expanduser(os.fspath(b)))
    except (OSError, ValueError):  # one does not exist (yet), or cannot be named
        return False
