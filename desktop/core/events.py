"""Event: a tiny callback list, so core models can tell Qt adapters what changed.

Core objects (the canvas document, later the gallery store) emit events; the
widgets in desktop/ui connect to them. No Qt here, so the models are tested
without a window.
"""

from __future__ import annotations

from collections.abc import Callable


class Event:
    """Callbacks called in the order they were connected, with the emitted arguments."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., object]] = []

    def connect(self, callback: Callable[..., object]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., object]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args: object) -> None:
        for callback in list(self._callbacks):
            callback(*args)
