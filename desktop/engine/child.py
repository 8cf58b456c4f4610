"""Run one function in a child Python process, so that long work holding the GIL never freezes the window.

OpenVINO's converter (TorchScript tracing and ovc) holds the GIL for stretches of 150-350 ms: on a thread of the
app's process the GUI thread then cannot paint. `run` starts a fresh interpreter (multiprocessing's "spawn", the
same on Windows, macOS and Linux; the frozen app calls multiprocessing.freeze_support() first thing, main.py),
passes it the function and its arguments (pickled: a module-level function, plain values), and waits without
holding the GIL, looking every POLL_S whether the user cancelled or the time ran out; either ends the child at once.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable

from desktop.core.errors import Cancelled
from desktop.core.progress import TaskState

POLL_S = 0.05  # how often the wait looks at the cancel flag and the clock
_END_S = 0.2  # how long a terminated child gets before it is killed


class ChildFailed(RuntimeError):
    """The function raised in the child; the message is its exception's text."""


class ChildDied(RuntimeError):
    """The child ended without an answer: killed (out of memory) or crashed."""

    def __init__(self, exitcode: int | None):
        super().__init__(f"the child process ended with exit code {exitcode}")
        self.exitcode = exitcode


class ChildTimedOut(RuntimeError):
    """The child did not answer within the time given; it was ended."""


def run(target: Callable, args: tuple = (), state: TaskState | None = None, timeout: float | None = None):
    """target(*args) in a child process: its result, or ChildFailed / ChildDied / ChildTimedOut; Cancelled (the
    child ended within about POLL_S + 0.2 s) when `state` is cancelled meanwhile."""
    if state is not None and state.cancelled():
        raise Cancelled(0)
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(send, target, args), daemon=True)
    process.start()
    send.close()  # the child holds the only writer: a child that dies gives EOF
    started = time.monotonic()
    try:
        while True:
            if receive.poll(POLL_S):
                try:
                    kind, value = receive.recv()
                except EOFError:
                    process.join()
                    raise ChildDied(process.exitcode) from None
                if kind == "error":
                    raise ChildFailed(value)
                return value
            if state is not None and state.cancelled():
                raise Cancelled(0)
            if timeout is not None and time.monotonic() - started > timeout:
                raise ChildTimedOut(f"no answer within {timeout:.0f} s")
    finally:
        end(process)
        receive.close()


def end(process) -> None:
    """End `process` now (terminate, then kill what is still there after _END_S) and reap it."""
    if process.is_alive():
        process.terminate()
        process.join(_END_S)
        if process.is_alive():
            process.kill()
    process.join()


def _child_main(send, target: Callable, args: tuple) -> None:
    try:
        result = target(*args)
    except BaseException as error:  # noqa: BLE001 - everything the parent needs is the message
        text = str(error).strip() or type(error).__name__
        send.send(("error", text))
    else:
        send.send(("ok", result))
    finally:
        send.close()
