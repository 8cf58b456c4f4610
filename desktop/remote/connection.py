"""The Settings window's "Test connection": one sentence about a Sfumato server.

`check(url, token)` asks the server's /health and /models (it waits on the network: call it off the GUI
thread) and returns the success sentence, or raises SfumatoError with the sentence of what went wrong
(unreachable, a wrong token, not a Sfumato server). Nothing waits longer than its timeouts.
"""

from __future__ import annotations

import http.client

from desktop.core.backend import GENERATION
from desktop.core.errors import SfumatoError
from desktop.core.progress import TaskState

from .backend import RemoteBackend

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0


def check(url: str, token: str = "", *, connect_timeout: float = CONNECT_TIMEOUT_S,
          read_timeout: float = READ_TIMEOUT_S) -> str:
    """'Connected to the server at URL: 2 replicas, 5 models.'; a SfumatoError's sentence when it is not."""
    backend = RemoteBackend(url.strip(), token.strip() or None, connect_timeout=connect_timeout,
                            read_timeout=read_timeout)
    try:
        backend.start(TaskState())
        models = [model for model in backend.models() if GENERATION in model.kinds]
    except SfumatoError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as error:  # a server that answers unlike Sfumato's
        raise SfumatoError(f"The server at {backend.url} did not answer as a Sfumato server does ({error}); "
                           "check the address and the port.") from None
    return (f"Connected to the server at {backend.url}: {_count(backend.slots, 'replica')}, "
            f"{_count(len(models), 'model')}.")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
