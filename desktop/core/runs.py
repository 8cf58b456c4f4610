"""Runs: one queued item that is many jobs on the backend, such as an X/Y/Z plot's cells or a folder batch.

The worker takes a Run from its queue like any job and calls `run(backend, state, context)` on its own thread.
The Run loads and runs what it needs through the Backend protocol, so it works the same locally and on a server.
It saves what it makes through `context` (the gallery and metadata of a lone job's pictures, or its own files,
such as a folder batch's outputs) and returns what the window shows and says. Progress is one bar for the whole
Run: `part(state, done, total)` gives each backend call a TaskState that counts its steps after the `done`
steps before it, out of the Run's `total_steps()`, and shares the Run's cancel.

A Run is stored in the queue that survives a restart as `encode()` (JSON-able), and made again with
`decode_run(data)`, which looks up the "kind" each Run module registers with `register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .backend import Backend, ModelDescriptor, Result
from .errors import SfumatoError
from .progress import TaskState
from .settings import Settings

Shown = tuple[np.ndarray, int, Path | None]  # a picture the window shows: (image, seed or -1, saved path or None)


class SaveFailed(SfumatoError):
    """The pictures could not be written; the sentence says where and why."""


@dataclass
class RunContext:
    """What the worker lends a Run."""

    settings: Settings
    # results of backend.run saved as a lone job's are: the output folder, its gallery, A1111 metadata with the
    # loaded model's name and hash (None for an upscale); returns [(image, seed, path)]; raises SaveFailed
    save: Callable[[list[Result], ModelDescriptor | None], list[Shown]]
    # any other picture (a plot's grid) into the output folder and its gallery: (file name, image, parameters
    # text for its PNG, extra PNG text chunks) -> the saved path; raises SaveFailed
    add_picture: Callable[[str, np.ndarray, str, dict[str, str]], Path]
    status: Callable[[str], None] = lambda text: None


@dataclass(frozen=True)
class RunOutcome:
    shown: list[Shown] = field(default_factory=list)  # what the window adds to the gallery (and stages), first first
    summary: str = ""  # the closing status line, e.g. "Plot done in 41 s: 9 pictures and the grid saved to ..."


@runtime_checkable
class Run(Protocol):
    kind: str  # the key `decode_run` looks up: "plot", "folder-batch"

    def describe(self) -> str:
        """One line for the queue view, e.g. "X/Y/Z plot: Steps x CFG scale, 9 pictures"."""

    def pictures(self) -> int:
        """How many pictures it will make (the queue's progress counts them)."""

    def total_steps(self) -> int:
        """The length of its progress bar: the steps of every backend call it will make."""

    def run(self, backend: Backend, state: TaskState, context: RunContext) -> RunOutcome:
        """Run on the worker thread; raise Cancelled when state is cancelled (the backend does, within a step)."""

    def encode(self) -> dict:
        """JSON-able, with "kind"; pictures as PNG in base64 (remote_protocol's helpers)."""


_KINDS: dict[str, Callable[[dict], Run]] = {}


def register(kind: str, decode: Callable[[dict], Run]) -> None:
    _KINDS[kind] = decode


def decode_run(data: dict) -> Run:
    """The Run `encode()` gave; SfumatoError when its kind is unknown (a queue written by a newer Sfumato)."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in _KINDS:
        raise SfumatoError(f"A queued item of an unknown kind ({kind!r}) was skipped; a newer Sfumato wrote it.")
    return _KINDS[kind](data)


def part(state: TaskState, done: int, total: int) -> TaskState:
    """A TaskState for one backend call of a Run: its steps count after `done` of the Run's `total`, its status
    lines are the Run's, and cancelling the Run cancels it."""

    return _Part(state, lambda index, _total, preview: state.step(done + index, total, preview))


def nth(state: TaskState, k: int, count: int) -> TaskState:
    """A TaskState for the k-th (from 0) of `count` backend calls of the same length (a batch run a seed at a
    time): its steps fill the k-th of `count` equal parts of `state`'s bar."""
    return _Part(state, lambda index, total, preview: state.step(k * total + index, count * total, preview))


class _Part(TaskState):
    def __init__(self, state: TaskState, on_step):
        super().__init__(on_step=on_step, on_status=state.status)
        self._whole = state

    def cancelled(self) -> bool:
        return self._whole.cancelled() or super().cancelled()

    def cancel(self) -> None:
        self._whole.cancel()
