"""TaskState: what a background run needs from its caller.

The engine calls `step()` after every denoising step and checks
`cancelled()`; the GUI worker and the CLI each pass callbacks. Cancelling is
a threading.Event, safe to set from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

StepCallback = Callable[[int, int, "np.ndarray | None"], None]
StatusCallback = Callable[[str], None]


class TaskState:
    def __init__(self, on_step: StepCallback | None = None, on_status: StatusCallback | None = None):
        self._cancel = threading.Event()
        self._on_step = on_step
        self._on_status = on_status

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def step(self, index: int, total: int, preview: np.ndarray | None) -> None:
        """Report that step `index` (1-based) of `total` is done, with an optional preview."""
        if self._on_step is not None:
            self._on_step(index, total, preview)

    def status(self, text: str) -> None:
        if self._on_status is not None:
            self._on_status(text)
