"""The queue that survives a restart (desktop/core/queue_store.py): every kind of job comes back whole, with its
pictures, in its order; what ended is gone; a damaged database or row is set aside with a sentence, never a crash;
and the whole queue's progress figure (desktop/core/queue_progress.py)."""

from __future__ import annotations

import gc
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from desktop.core import paths, runs
from desktop.core.backend import PreprocessJob
from desktop.core.control import Control, Reference
from desktop.core.faces import FaceSettings
from desktop.core.geometry import Extent
from desktop.core.postprocess import DetailSettings, UpscaleRequest
from desktop.core.queue_progress import QueueProgress, duration
from desktop.core.queue_store import QueueStore
from desktop.core.remote_protocol import decode_png, encode_png
from desktop.core.request import Hires, InpaintArea, Margins, Mode
from desktop.core.xyz import PlotRun, parse_axis
from tests.support.requests import make_request


def pixels(height: int, width: int, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    shape = (height, width) if channels is None else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


class Strip:
    """A Run of a test kind that carries a picture, as a folder batch or a plot carries its own."""

    kind = "test-strip"

    def __init__(self, image: np.ndarray, count: int):
        self.image, self.count = image, count

    def describe(self) -> str:
        return f"A strip of {self.count}"

    def pictures(self) -> int:
        return self.count

    def total_steps(self) -> int:
        return 2 * self.count

    def run(self, backend, state, context):
        raise NotImplementedError

    def encode(self) -> dict:
        return {"kind": self.kind, "count": self.count, "image": encode_png(self.image)}


@pytest.fixture(autouse=True)
def strip_kind(monkeypatch):
    monkeypatch.setitem(runs._KINDS, Strip.kind, lambda data: Strip(decode_png(data["image"], "strip"), data["count"]))


def inpaint_request():
    return make_request(
        mode=Mode.INPAINT, model="/models/photo v2.safetensors", width=96, height=64, prompt="a red kite, «calm»",
        negative_prompt="blur", steps=7, cfg_scale=5.5, seed=1234, batch_size=2, strength=0.6, sampler="Euler a",
        clip_skip=2, init_image=pixels(64, 96, 4, seed=1), mask=pixels(64, 96, None, seed=2), mask_blur=9,
        inpaint_area=InpaintArea.ONLY_MASKED, inpaint_padding=40, expand=Margins(8, 0, 16, 0),
        hires=Hires(enabled=True, upscaler="/models/upscalers/4x-Ultra.pth", scale=1.5, steps=3, denoise=0.4),
        controls=(Control("/models/cn/canny.safetensors", pixels(64, 96, seed=3), "canny", 0.8, 0.1, 0.9, True),
                  Control("demo", pixels(32, 48, 4, seed=4), "depth", 1.2, 0.0, 0.5, False)),
        references=(Reference(pixels(40, 40, seed=5), 0.7, "style", "/models/ip/face.bin"),),
    )


def face_fix():
    image = pixels(48, 64, seed=6)
    detailer = DetailSettings("/models/photo.safetensors", make_request(prompt="a face", steps=5).conditioning,
                              make_request(steps=5, strength=0.3).sampling)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    return UpscaleRequest(image, 1.0, None, "/models/faces/GFPGANv1.4.pth", "Steps: 20, Seed: 5",
                          beside="/pictures/00012-5.png", restore="face",
                          faces=FaceSettings("/models/faces/GFPGANv1.4.pth", 0.8, detailer,
                                             "/models/detectors/yunet.onnx", mask, 24, 6, 512))


def upscale_with_detail():
    return UpscaleRequest(pixels(30, 40, 4, seed=7), 2.5, Extent(100, 75), "Lanczos", "",
                          detail=DetailSettings("demo", make_request(prompt="crisp").conditioning))


def same_pictures(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and a.shape == b.shape
                                         and np.array_equal(a, b))


def test_every_kind_of_job_comes_back_whole_with_its_pictures_in_its_order():
    inpaint, face, upscale, strip = inpaint_request(), face_fix(), upscale_with_detail(), Strip(pixels(8, 24), 3)
    store = QueueStore()
    for job_id, job in enumerate((inpaint, face, PreprocessJob("canny", pixels(8, 8)), upscale, strip), start=1):
        store.queued(job_id, job)
    store.close()
    assert paths.queue_file().is_file() and paths.queue_file().parent == paths.settings_file().parent

    again = QueueStore()
    back = again.load()
    again.close()
    assert again.notice == ""
    assert [type(job).__name__ for job in back] == ["GenerationRequest", "UpscaleRequest", "UpscaleRequest", "Strip"]
    request = back[0]
    assert request == inpaint  # every field but the pictures (which dataclass equality leaves out)
    assert request.to_dict() == inpaint.to_dict()
    assert same_pictures(request.images.init, inpaint.images.init) and request.images.init.shape[2] == 4
    assert same_pictures(request.images.mask, inpaint.images.mask)
    assert [c.replace(image=None) for c in request.controls] == [c.replace(image=None) for c in inpaint.controls]
    assert all(same_pictures(a.image, b.image) for a, b in zip(request.controls, inpaint.controls, strict=True))
    assert request.references == inpaint.references
    assert same_pictures(request.references[0].image, inpaint.references[0].image)
    fixed = back[1]
    assert fixed.replace(image=None) == face.replace(image=None)  # beside, the detector file, the detailer, padding...: what the server's body leaves out too
    assert fixed.beside == "/pictures/00012-5.png" and fixed.faces.detector == "/models/detectors/yunet.onnx"
    assert same_pictures(fixed.image, face.image) and np.array_equal(fixed.faces.mask, face.faces.mask)
    assert back[2].replace(image=None) == upscale.replace(image=None) and same_pictures(back[2].image, upscale.image)
    assert back[3].count == 3 and same_pictures(back[3].image, strip.image)


def test_what_ended_is_gone_and_a_new_order_is_kept():
    store = QueueStore()
    for job_id in (1, 2, 3, 4):
        store.queued(job_id, make_request(prompt=f"job {job_id}"))
    store.ended(2)  # done, failed, cancelled or removed
    store.ordered([4, 1, 3])  # moved up
    store.close()

    again = QueueStore()
    back = again.load()
    assert [job.conditioning.prompt for job in back] == ["job 4", "job 1", "job 3"]
    # queued again in the next session under new ids: the same rows, not copies; ending them ends the rows
    for job_id, job in zip((7, 8, 9), back, strict=True):
        again.queued(job_id, job)
    again.queued(10, make_request(prompt="a new one"))
    again.ended(8)
    again.flush()
    assert again.count() == 3
    again.close()
    third = QueueStore()
    assert [job.conditioning.prompt for job in third.load()] == ["job 4", "job 3", "a new one"]
    gc.collect()
    for job_id in range(1, 201):  # new jobs, made where what load() gave was let go, are stored as new ones
        third.queued(job_id, make_request(prompt=f"more {job_id}"))
    third.close()
    fourth = QueueStore()
    assert len(fourth.load()) == 203
    fourth.close()


def test_an_unreadable_database_is_set_aside_and_the_queue_starts_empty():
    path = paths.queue_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    store = QueueStore()
    assert store.load() == []
    assert store.notice.startswith(f"The queue of the last session ({path}) could not be read (")
    assert store.notice.endswith("the queue starts empty. It was kept as queue.sqlite.bad.")
    assert path.with_name("queue.sqlite.bad").read_bytes().startswith(b"this is not")
    store.queued(1, make_request(prompt="still works"))
    store.close()
    again = QueueStore()
    assert [job.conditioning.prompt for job in again.load()] == ["still works"] and again.notice == ""
    again.close()


def test_rows_that_cannot_be_read_are_set_aside_and_the_others_come_back():
    store = QueueStore()
    store.queued(1, make_request(prompt="first"))
    store.queued(2, make_request(prompt="second"))
    store.close()
    db = sqlite3.connect(paths.queue_file())
    db.execute("INSERT INTO jobs (position, kind, data, queued) VALUES (1.5, 'generation', '{\"kind\": ', 0)")
    db.execute("INSERT INTO jobs (position, kind, data, queued) VALUES (1.6, 'run', '{\"kind\": \"x-y-w\"}', 0)")
    db.commit()
    db.close()

    again = QueueStore()
    back = again.load()
    assert [job.conditioning.prompt for job in back] == ["first", "second"]
    assert again.notice.startswith("2 queued jobs of the last session could not be read and were set aside (")
    again.close()
    db = sqlite3.connect(paths.queue_file())
    reasons = [row[0] for row in db.execute("SELECT reason FROM set_aside ORDER BY id")]
    db.close()
    assert len(reasons) == 2 and "unknown kind ('x-y-w')" in reasons[1]
    third = QueueStore()
    assert len(third.load()) == 2 and third.notice == ""  # said once: the rows no longer wait in the queue
    third.close()


def test_the_progress_figure_counts_since_the_queue_last_emptied_and_estimates_by_picture_steps():
    now = [0.0]
    progress = QueueProgress(clock=lambda: now[0])
    assert progress.text() == ""
    jobs = {job_id: make_request(steps=10, batch_size=2) for job_id in range(1, 5)}
    for job_id, job in jobs.items():
        progress.queued(job_id, job)
    progress.started(1)
    assert progress.text() == "0 of 4"  # nothing measured yet: no time
    now[0] = 40.0  # 20 picture-steps in 40 s: 2 s each
    progress.ended(1, finished=True)
    assert progress.text() == "1 of 4, about 2 min left"  # 3 x 20 x 2 s
    progress.started(2)
    progress.stepped(2, 8, 10)
    assert progress.text() == "1 of 4, about 1 min left"  # 2.2 jobs left: 88 s
    assert progress.text(at_once=2) == "1 of 4, about 44 s left"  # two replicas
    progress.removed(4)
    progress.ended(2, finished=False)  # cancelled: ended, not measured
    assert progress.text() == "2 of 3, about 40 s left"
    progress.queued(5, UpscaleRequest(pixels(8, 8), 2.0))
    assert progress.text() == "2 of 4"  # no upscale measured yet
    progress.started(3)
    now[0] = 80.0
    progress.ended(3, finished=True)
    progress.started(5)
    progress.ended(5, finished=True)
    assert progress.text() == "4 of 4"
    progress.queued(6, make_request(steps=30))  # the queue had emptied: a new count
    assert progress.text() == "0 of 1, about 1 min left"
    assert [duration(s) for s in (0.2, 59, 61, 3600, 4800)] == ["1 s", "59 s", "1 min", "1 h", "1 h 20 min"]


def test_the_time_left_on_replicas_is_never_less_than_the_longest_job_left():
    now = [0.0]
    progress = QueueProgress(clock=lambda: now[0])
    job = make_request(steps=20)
    progress.queued(1, job)
    progress.started(1)
    now[0] = 60.0  # one job: 60 s
    progress.ended(1, finished=True)
    progress.queued(2, job)
    progress.started(2)
    assert progress.text(at_once=4) == "0 of 1, about 1 min left"  # one job left runs on one replica, not four
    progress.queued(3, job)
    assert progress.text(at_once=4) == "0 of 2, about 1 min left"  # two jobs side by side: 60 s, not 30
    progress.queued(4, make_request(steps=2))
    progress.queued(5, make_request(steps=2))
    assert progress.seconds_left(at_once=2) == 66.0  # 132 s of work on two replicas, at least the longest job


def test_a_stored_plot_comes_back_in_a_fresh_app_that_has_not_opened_the_plot_dialog():
    store = QueueStore()
    init = pixels(64, 80, seed=8)
    store.queued(1, PlotRun(make_request(mode=Mode.IMG2IMG, init_image=init, prompt="a quay", width=80, height=64),
                            parse_axis("Steps", "2,3")))
    store.close()
    probe = ("from desktop.core.queue_store import QueueStore; s = QueueStore(); jobs = s.load(); "
             "print(s.notice or [type(j).__name__ + ': ' + j.describe() for j in jobs], int(jobs[0].base.images.init.sum()))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == f"['PlotRun: X/Y/Z plot: Steps, 2 pictures'] {int(init.sum())}"


def queue_bytes() -> int:
    path = paths.queue_file()
    return sum(path.with_name(path.name + suffix).stat().st_size for suffix in ("", "-wal", "-shm")
               if path.with_name(path.name + suffix).exists())


def test_a_picture_many_jobs_share_is_stored_once_and_the_file_shrinks_when_the_queue_empties():
    photo = pixels(512, 512)  # about 1 MB as a PNG
    one_picture = len(encode_png(photo))
    store = QueueStore()
    for job_id in range(1, 9):  # batch count 8 of one img2img
        store.queued(job_id, make_request(prompt=f"job {job_id}", seed=job_id, mode=Mode.IMG2IMG, init_image=photo))
    store.flush()
    assert queue_bytes() < 2 * one_picture  # once, not 8 times
    for job_id in range(1, 8):
        store.ended(job_id)
    store.flush()
    store.close()
    again = QueueStore()
    [last] = again.load()
    assert last.conditioning.prompt == "job 8" and same_pictures(last.images.init, photo)  # its picture kept
    again.queued(1, last)
    again.ended(1)
    again.close()
    assert queue_bytes() < one_picture // 10  # emptied: the disk is given back


def test_the_store_keeps_writing_after_a_job_it_could_not_store_and_says_so(monkeypatch):
    from desktop.core import queue_store

    real = queue_store.encode

    def encode(job):
        if job.conditioning.prompt == "unforeseen":
            raise RuntimeError("an error nobody foresaw")
        return real(job)

    monkeypatch.setattr(queue_store, "encode", encode)
    problems = []
    store = QueueStore(on_problem=problems.append)
    store.queued(1, make_request(prompt="fine"))
    store.queued(2, make_request(prompt="unforeseen"))
    store.queued(3, make_request(prompt="after it"))
    deadline = time.monotonic() + 10
    while store._writes.unfinished_tasks and time.monotonic() < deadline:  # a dead thread would never get there
        time.sleep(0.01)
    assert len(problems) == 1 and problems[0].startswith("The queue could not be saved")
    store.close()
    again = QueueStore()
    assert [job.conditioning.prompt for job in again.load()] == ["fine", "after it"]
    again.close()
