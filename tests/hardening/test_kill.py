"""Kill (SIGKILL) a process at random moments while it saves results and autosaves a document.

Afterwards: every visible file is a whole picture, the gallery index matches the files after its
reconcile, and the last autosave opens. 25 kills in the normal run; 200 with `pytest -m slow`.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from desktop.core import autosave
from desktop.core.document import CanvasDocument
from desktop.core.gallery.index import Query
from desktop.core.gallery.store import GalleryStore

CHILD = Path(__file__).with_name("kill_child.py")
ROOT = Path(__file__).resolve().parents[2]


def kill_repeatedly(folder: Path, home: Path, times: int) -> int:
    rng = random.Random(1234)
    env = {**os.environ, "SFUMATO_HOME": str(home), "PYTHONPATH": str(ROOT)}
    for run in range(times):
        child = subprocess.Popen([sys.executable, str(CHILD), str(folder), str(run)], stdout=subprocess.PIPE,
                                 env=env, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.35))
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
    return times


@pytest.mark.parametrize("times", [25, pytest.param(200, marks=pytest.mark.slow)])
def test_nothing_half_written_survives_being_killed(tmp_path, monkeypatch, times):
    folder, home = tmp_path / "work", tmp_path / "home"
    monkeypatch.setenv("SFUMATO_HOME", str(home))
    kill_repeatedly(folder, home, times)
    visible = [p for p in (folder / "outputs").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(visible) > times, "pictures were being saved when the kills came"
    for path in visible:
        with Image.open(path) as image:
            image.load()  # a whole picture, never half of one
    store = GalleryStore(folder / "outputs", folder / "thumbnails")
    store.refresh()
    indexed = {record.path for record in store.records(store.search(Query())).values()}
    assert indexed == {store.relative(p) for p in visible}, "after its reconcile the index matches the files"
    assert store.index.check()
    store.close()
    recovered = CanvasDocument.from_snapshot(autosave.load())  # the last autosave opens
    assert recovered.composite().any()
