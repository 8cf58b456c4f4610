"""Download a diffusers model from the Hugging Face Hub (or a mirror).

Only what a diffusers pipeline needs is fetched: configs, tokenizer files
and the full-precision .safetensors of each component (no .ckpt/.bin
pickles, no safety checker, no duplicate fp16/EMA variants). Files land in
Sfumato's own Hub cache. An interrupted download (cancelled, or the network
failed) resumes file by file: the files that were complete are kept and not
fetched again, but the file that was being fetched starts over, because
huggingface_hub (2.x) deletes a partial file when its download stops. Within
one download, a connection that drops mid-file is resumed with a Range request
by huggingface_hub itself.
The endpoint comes from HF_ENDPOINT at call time, so a mirror (or a local
stand-in server in tests) can be used.

A core service, not engine code: it needs huggingface_hub (imported when a
download starts), never torch, so the engine (loading a repo id) and the
Models window (its download panel, on a background thread) both call it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tqdm.auto import tqdm

from desktop.core import model_sources
from desktop.core.errors import Cancelled, ModelLoadError
from desktop.core.progress import TaskState

# *.jinja: a Qwen tokenizer's chat template (Z-Image, FLUX.2 klein) may be a file of its own.
ALLOW = ["model_index.json", "*/*.json", "*/*.txt", "*/*.jinja", "*/*.safetensors"]
IGNORE = ["safety_checker/*", "*.fp16.*", "*.non_ema.*", "*.ema.*", "*onnx*", "*.bin", "*.ckpt"]


def cache_dir() -> Path:
    return model_sources.hub_cache_dir()


def download(repo_id: str, state: TaskState, revision: str | None = None) -> Path:
    """Fetch (or resume) repo_id and return the local snapshot folder."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    class Progress(tqdm):
        """Forwards byte progress to the task state and stops when it is cancelled."""

        monitor_interval = 0  # no tqdm monitor thread: nothing is displayed

        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False  # a disabled tqdm does not count, and we need the counts
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs, file=_NoOutput())

        def update(self, n=1):
            if state.cancelled():
                raise Cancelled(0)
            result = super().update(n)
            if self.unit == "B" and self.total:
                state.status(f"Downloading {repo_id}: {self.n / 2**20:.0f} of {self.total / 2**20:.0f} MB")
            return result

    # Cancel is noticed between chunks: keep them small enough to stop within a moment on a slow link.
    constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, 1 << 20)
    try:  # already downloaded: no network needed to generate
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir(), allow_patterns=ALLOW,
                                        ignore_patterns=IGNORE, local_files_only=True))
        if (folder / "model_index.json").is_file():
            return folder
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    state.status(f"Downloading {repo_id}...")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir(),
            allow_patterns=ALLOW,
            ignore_patterns=IGNORE,
            tqdm_class=Progress,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            max_workers=2,
        )
    except Cancelled:
        raise
    except RepositoryNotFoundError:
        raise ModelLoadError(repo_id, "there is no such repository on Hugging Face (or it is private).") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, *_transport_errors()) as error:
        raise ModelLoadError(repo_id, f"the download failed ({_first_line(error)}). Check the connection and try again.") from None
    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(repo_id, "the repository is not a diffusers model (it has no model_index.json).")
    return folder


class _NoOutput:
    """Where the progress bars draw: nowhere (no file is opened for them)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's own errors, e.g. a connection reset in the middle of a file.

    huggingface_hub 1.x and 2.x download through httpx / httpx2, whose errors are not
    OSErrors and are not all wrapped by huggingface_hub; older releases used requests,
    whose errors are OSErrors. Only clients that huggingface_hub already imported count.
    """
    return tuple(sys.modules[name].HTTPError for name in ("httpx2", "httpx") if name in sys.modules)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
