"""Live mode: drafts of the canvas frame as the person paints (desktop/ui/canvas/live.py, GenerationWorker drafts)."""

from __future__ import annotations

import threading

from desktop.core import settings as settings_store
from desktop.core.errors import Cancelled
from desktop.core.queue_store import QueueStore
from desktop.ui.worker import GenerationWorker
from tests.support.fake_backend import FakeBackend
from tests.support.requests import make_request


def draft(seed: int = 1, steps: int = 4):
    return make_request(prompt="a kite", model="some/model", width=64, height=64, steps=steps, seed=seed)


class Ends:
    """What the worker said of each job: "started", "finished", "cancelled", "failed"."""

    def __init__(self, worker: GenerationWorker):
        self.said: dict[int, list[str]] = {}
        self.saved: dict[int, list] = {}
        worker.job_started.connect(lambda job, _r: self.said.setdefault(job, []).append("started"))
        worker.job_finished.connect(self._finished)
        worker.job_cancelled.connect(lambda job: self.said.setdefault(job, []).append("cancelled"))
        worker.job_failed.connect(lambda job, message: self.said.setdefault(job, []).append(f"failed: {message}"))

    def _finished(self, job: int, saved: list) -> None:
        self.said.setdefault(job, []).append("finished")
        self.saved[job] = saved

    def ended(self, job: int) -> bool:
        return any(word in ("finished", "cancelled") or word.startswith("failed") for word in self.said.get(job, []))


def test_a_new_draft_cancels_the_running_one_and_drops_the_waiting_one(qtbot):
    backend = FakeBackend(step_delay=0.1)
    worker = GenerationWorker(settings_store.load(), backend.factory)
    ends = Ends(worker)
    try:
        stepped = []
        worker.step.connect(lambda job, *_: stepped.append(job))
        first = worker.submit_draft(draft(steps=50))
        qtbot.waitUntil(lambda: first in stepped, timeout=10_000)  # past loading: it is drawing
        second = worker.submit_draft(draft(seed=2))  # waits for the first to stop...
        third = worker.submit_draft(draft(seed=3, steps=2))  # ...and is replaced by this one before it starts
        qtbot.waitUntil(lambda: ends.ended(third), timeout=10_000)
        assert ends.said[first] == ["started", "cancelled"]
        assert ends.said[second] == ["cancelled"]  # never started
        assert ends.said[third] == ["started", "finished"]
        assert [job.request.sampling.seed for job in backend.jobs] == [1, 3]
        assert all(worker.is_draft(job) for job in (first, second, third))
    finally:
        worker.cancel()
        assert worker.shutdown(5000)


class Converting(FakeBackend):
    """A backend whose runs wait at `gate` before their first step, as a model loading or converting for OpenVINO
    does; a cancel stops the wait (the converter is killed, and what it did is lost)."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.thrown_away = 0

    def run(self, job, state):
        while not self.gate.wait(0.01):
            if state.cancelled():
                self.thrown_away += 1
                raise Cancelled(0)
        return super().run(job, state)


def test_a_new_draft_waits_for_one_still_loading_the_model_instead_of_throwing_the_conversion_away(qtbot):
    backend = Converting()
    worker = GenerationWorker(settings_store.load(), backend.factory)
    ends = Ends(worker)
    try:
        first = worker.submit_draft(draft(steps=2))
        qtbot.waitUntil(lambda: "started" in ends.said.get(first, []), timeout=10_000)
        second = worker.submit_draft(draft(seed=2, steps=2))  # a stroke while the model converts
        third = worker.submit_draft(draft(seed=3, steps=2))  # the newer draft replaces the waiting one
        qtbot.wait(300)
        assert ends.said[first] == ["started"] and ends.said[second] == ["cancelled"]
        backend.gate.set()
        qtbot.waitUntil(lambda: ends.ended(third), timeout=10_000)
        assert ends.said[first] == ["started", "finished"] and ends.said[third] == ["started", "finished"]
        assert backend.thrown_away == 0 and [job.request.sampling.seed for job in backend.jobs] == [1, 3]
    finally:
        worker.cancel()
        backend.gate.set()
        assert worker.shutdown(5000)


def test_drafts_say_only_their_one_time_work_in_the_status_bar(qtbot):
    worker = GenerationWorker(settings_store.load(), FakeBackend().factory)
    ends = Ends(worker)
    said = []
    worker.status.connect(said.append)
    try:
        first = worker.submit_draft(draft(steps=2))
        qtbot.waitUntil(lambda: ends.ended(first), timeout=10_000)
        second = worker.submit_draft(draft(seed=2, steps=2))
        qtbot.waitUntil(lambda: ends.ended(second), timeout=10_000)
        qtbot.wait(100)
        assert not any(line.startswith("Generating") for line in said)  # never the per-draft line
        assert [line for line in said if line.startswith("Loading")] == ["Loading model..."]  # why the first is slow
        assert len(said) == len(set(said))  # nothing a draft before said, again
    finally:
        worker.cancel()
        assert worker.shutdown(5000)


def test_a_draft_never_cancels_a_normal_job_it_waits_behind_it(qtbot):
    backend = FakeBackend(step_delay=0.05)
    worker = GenerationWorker(settings_store.load(), backend.factory)
    ends = Ends(worker)
    try:
        job = worker.submit(draft(seed=1, steps=8))
        qtbot.waitUntil(lambda: "started" in ends.said.get(job, []), timeout=10_000)
        first = worker.submit_draft(draft(seed=2, steps=2))
        second = worker.submit_draft(draft(seed=3, steps=2))
        qtbot.waitUntil(lambda: ends.ended(second), timeout=10_000)
        assert ends.said[job] == ["started", "finished"]
        assert ends.said[first] == ["cancelled"]
        assert ends.said[second] == ["started", "finished"]
        assert not worker.is_draft(job)
    finally:
        worker.cancel()
        assert worker.shutdown(5000)


def test_a_draft_is_neither_queued_nor_stored_nor_saved(qtbot, tmp_path):
    settings = settings_store.load()
    settings.output_folder = str(tmp_path / "out")
    worker = GenerationWorker(settings, FakeBackend(step_delay=0.02).factory)
    store = QueueStore(tmp_path / "q.sqlite")
    worker.set_store(store)
    shown = []
    worker.queue_changed.connect(lambda pending: shown.append(list(pending)))
    ends = Ends(worker)
    try:
        worker.pause()  # a draft runs while the queue is paused: it is not a queue job
        job = worker.submit_draft(draft(steps=3))
        assert worker.pending() == []
        qtbot.waitUntil(lambda: ends.ended(job), timeout=10_000)
        store.flush()
        assert ends.said[job] == ["started", "finished"]
        [(image, seed, path)] = ends.saved[job]
        assert image.shape == (64, 64, 3) and seed == 1 and path is None
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))
        assert all(pending == [] for pending in shown)
        assert store.load() == []
    finally:
        worker.cancel()
        assert worker.shutdown(5000)
        store.close()


def test_turning_drafts_off_cancels_the_running_and_the_waiting_draft(qtbot):
    worker = GenerationWorker(settings_store.load(), FakeBackend(step_delay=0.1).factory)
    ends = Ends(worker)
    try:
        first = worker.submit_draft(draft(steps=50))
        qtbot.waitUntil(lambda: "started" in ends.said.get(first, []), timeout=10_000)
        second = worker.submit_draft(draft(seed=2))
        worker.cancel_drafts()
        qtbot.waitUntil(lambda: ends.ended(first) and ends.ended(second), timeout=10_000)
        qtbot.wait(200)
        assert ends.said[first] == ["started", "cancelled"] and ends.said[second] == ["cancelled"]
    finally:
        worker.cancel()
        assert worker.shutdown(5000)


# -- on the canvas, in the window (FakeBackend) ------------------------------------------------------------------

import time  # noqa: E402

import numpy as np  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from desktop.core.document import CanvasDocument  # noqa: E402
from desktop.core.errors import SfumatoError  # noqa: E402
from desktop.ui.canvas.tools import Tool  # noqa: E402
from tests.ui.test_canvas import at, drag, quick  # noqa: E402

TIMEOUT = 20_000
LCM_MARK = {"tiny-sd1": "lcm"}  # the test's model, marked as an LCM model by its owner (settings.few_step_marks)


def live_window(make_window, fake_backend, step_delay=0.0):
    fake_backend.step_delay = step_delay
    window = make_window(few_step_marks=LCM_MARK)
    picture = np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    window.files.set_document(CanvasDocument.from_image(picture, "photo"), name="photo")
    window.canvas.fit()
    quick(window, steps=12, sampler="DPM++ 2M", cfg_scale=6.0, seed=7)
    window.tools.set_tool(Tool.BRUSH)
    return window


def drafts(backend) -> list:
    return [job.request for job in backend.jobs if job.request.decoder == "tiny"]


def stroke(qtbot, window, y: int) -> None:
    drag(qtbot, window.canvas, [at(window, x, y) for x in range(40, 200, 20)])


def turn_on(qtbot, window, backend) -> None:
    qtbot.mouseClick(window.live.controls.toggle, Qt.MouseButton.LeftButton)
    assert window.live.on
    qtbot.waitUntil(lambda: window.canvas.picture("live") is not None and len(window.live.latencies) == 1,
                    timeout=TIMEOUT)


def test_a_burst_of_strokes_makes_one_draft_shown_over_the_frame_not_as_a_layer(make_window, fake_backend, qtbot):
    window = live_window(make_window, fake_backend)
    turn_on(qtbot, window, fake_backend)  # the frame as it is, at once
    layers, before = len(window.doc.layers), len(drafts(fake_backend))
    started = []
    window.worker.job_started.connect(lambda job, _request: started.append(time.perf_counter()))
    for y in (60, 100, 140):  # one stroke after the other: one draft for the three
        stroke(qtbot, window, y)
    ended = time.perf_counter()
    assert 150 < window.live._timer.remainingTime() <= 400  # asked for after a pause (about 0.3 s), not at once
    qtbot.waitUntil(lambda: len(window.live.latencies) == 2, timeout=TIMEOUT)
    qtbot.wait(500)
    assert len(drafts(fake_backend)) == before + 1
    assert started[0] - ended >= 0.25  # the pause (0.3 s from the stroke's end, a little before the drag returned)
    draft = drafts(fake_backend)[-1]
    assert (draft.sampling.sampler, draft.sampling.cfg_scale, draft.sampling.batch_size) == ("LCM", 1.0, 1)
    assert draft.mode.value == "img2img" and max(draft.width, draft.height) in (256, 512)
    assert draft.sampling.seed == drafts(fake_backend)[0].sampling.seed == 7  # the panel's fixed seed, each time
    image, bounds = window.canvas.picture("live")
    assert bounds == window.doc.frame and not image.isNull()
    assert len(window.doc.layers) == layers and window.doc.history.undo_label == "Brush stroke"
    assert window.generation.staged == [] and window.queue.list.count() == 0


def test_a_stroke_cancels_the_running_draft_and_the_last_draft_stays_shown(make_window, fake_backend, qtbot):
    window = live_window(make_window, fake_backend, step_delay=0.3)
    turn_on(qtbot, window, fake_backend)
    shown = window.canvas.picture("live")[0]
    cancelled = []
    window.worker.job_cancelled.connect(cancelled.append)
    stroke(qtbot, window, 60)
    qtbot.waitUntil(lambda: len(drafts(fake_backend)) == 2, timeout=TIMEOUT)  # running, slowly
    qtbot.waitUntil(lambda: "/" in window.live.controls.state.text(), timeout=TIMEOUT)  # past loading: drawing
    assert window.canvas.picture("live")[0] == shown  # the last finished draft, not a step preview
    assert window.canvas.live_faded  # half strength: the stroke shows through it until its draft lands
    stroke(qtbot, window, 120)
    qtbot.waitUntil(lambda: len(window.live.latencies) == 2, timeout=TIMEOUT)
    assert not window.canvas.live_faded
    assert len(cancelled) == 1 and window.worker.is_draft(cancelled[0])
    assert len(drafts(fake_backend)) == 3
    assert window.progress.format() != "Cancelled"  # a replaced draft is not news


def test_a_draft_waits_behind_a_normal_job_and_only_the_latest_one_runs(make_window, fake_backend, qtbot):
    window = live_window(make_window, fake_backend)
    turn_on(qtbot, window, fake_backend)
    fake_backend.step_delay = 0.15
    [job] = window.generate()  # 12 steps at the panel's settings
    qtbot.waitUntil(lambda: len(fake_backend.jobs) == 2, timeout=TIMEOUT)  # the normal job runs
    stroke(qtbot, window, 60)
    qtbot.wait(600)  # its draft waits...
    stroke(qtbot, window, 120)  # ...and is replaced by this one's
    qtbot.waitUntil(lambda: len(window.generation.staged) == 1, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: len(window.live.latencies) == 2, timeout=TIMEOUT)
    normal = [j.request for j in fake_backend.jobs if j.request.decoder == "full"]
    assert len(normal) == 1 and normal[0].sampling.steps == 12  # never cancelled
    assert len(drafts(fake_backend)) == 2  # the first, and the last stroke's: the waiting one was dropped
    assert window.generation.staged[0].path is not None and not window.worker.is_draft(job)


def test_make_full_quality_stages_the_panels_picture_and_saves_it_while_drafts_are_never_saved(
        make_window, fake_backend, qtbot):
    window = live_window(make_window, fake_backend)
    turn_on(qtbot, window, fake_backend)
    stroke(qtbot, window, 80)
    qtbot.waitUntil(lambda: len(window.live.latencies) == 2, timeout=TIMEOUT)
    output = window.settings.output_path()
    assert not any(output.rglob("*.png")) if output.exists() else True  # two drafts made, none saved
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT):
        qtbot.mouseClick(window.live.controls.full, Qt.MouseButton.LeftButton)
    [staged] = window.generation.staged
    assert staged.path is not None and staged.path.exists() and staged.frame == window.doc.frame
    made = [j.request for j in fake_backend.jobs if j.request.decoder == "full"]
    assert len(made) == 1 and made[0].sampling.steps == 12 and made[0].sampling.sampler == "DPM++ 2M"
    assert list(output.rglob("*.png")) == [staged.path]
    assert window.generation.bar.isVisible()  # accept / discard as usual


def test_turning_live_off_removes_the_draft_and_cancels_the_running_one(make_window, fake_backend, qtbot):
    window = live_window(make_window, fake_backend, step_delay=0.3)
    turn_on(qtbot, window, fake_backend)
    stroke(qtbot, window, 80)
    qtbot.waitUntil(lambda: len(drafts(fake_backend)) == 2, timeout=TIMEOUT)
    with qtbot.waitSignal(window.worker.job_cancelled, timeout=TIMEOUT):
        qtbot.mouseClick(window.live.controls.toggle, Qt.MouseButton.LeftButton)
    assert not window.live.on and window.canvas.picture("live") is None
    assert not window.live.controls.full.isEnabled()
    stroke(qtbot, window, 120)
    qtbot.wait(600)
    assert len(drafts(fake_backend)) == 2  # no draft once it is off


def test_a_model_without_a_few_step_path_says_what_to_add_and_live_stays_off(make_window, fake_backend, qtbot):
    window = make_window()  # tiny-sd1, not marked: a plain SD 1.5 model, and no LoRA
    qtbot.wait(300)  # the model scan has listed what there is
    window.panel.set_models([(str(window.settings.model), "tiny-sd1", "sd1")], str(window.settings.model))
    qtbot.mouseClick(window.live.controls.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.error_banner.isVisible(), timeout=TIMEOUT)
    text = window.error_banner.text()
    assert text.startswith("Live mode needs a few-step model or LoRA.") and "LCM" in text
    assert not window.live.on and not window.live.controls.toggle.isChecked()


def test_live_mode_plans_again_when_turned_on_again_and_after_a_draft_failed(make_window, fake_backend, qtbot,
                                                                           monkeypatch):
    from desktop.core import live as core_live  # noqa: PLC0415

    planned = []
    plan = core_live.model_plan
    monkeypatch.setattr(core_live, "model_plan", lambda *args, **kw: planned.append(args) or plan(*args, **kw))
    window = live_window(make_window, fake_backend)
    turn_on(qtbot, window, fake_backend)
    assert len(planned) == 1
    qtbot.mouseClick(window.live.controls.toggle, Qt.MouseButton.LeftButton)  # off: a LoRA may go meanwhile
    assert not window.live.on
    qtbot.mouseClick(window.live.controls.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.live.latencies) == 2, timeout=TIMEOUT)
    assert len(planned) == 2  # not the plan of before
    assert window.live._plans  # kept while live mode draws
    fake_backend.run_error = SfumatoError("The LoRA lcm-lora-sdv1-5 is gone.")
    stroke(qtbot, window, 80)
    qtbot.waitUntil(lambda: not window.live.on, timeout=TIMEOUT)  # the draft failed: live stops
    assert window.live._plans == {}


def held_builds(monkeypatch):
    """Make the first draft build wait at the returned event (off the GUI thread), as a slow composite would."""
    from desktop.core import live as core_live  # noqa: PLC0415

    release, made = threading.Event(), core_live.frame_draft
    calls = []

    def frame_draft(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            release.wait(10)
        return made(*args, **kwargs)

    monkeypatch.setattr(core_live, "frame_draft", frame_draft)
    return release, calls


def test_an_older_build_landing_after_a_newer_one_is_dropped(make_window, fake_backend, qtbot, monkeypatch):
    window = live_window(make_window, fake_backend)
    release, calls = held_builds(monkeypatch)
    qtbot.mouseClick(window.live.controls.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=TIMEOUT)  # the first build waits
    stroke(qtbot, window, 80)  # a newer build, which lands first
    qtbot.waitUntil(lambda: len(window.live.latencies) == 1, timeout=TIMEOUT)
    release.set()
    qtbot.wait(800)  # the older build lands now
    assert len(drafts(fake_backend)) == 1 and len(window.live.latencies) == 1


def test_a_build_or_a_draft_landing_after_live_was_turned_off_is_not_shown(make_window, fake_backend, qtbot,
                                                                           monkeypatch):
    window = live_window(make_window, fake_backend)
    release, calls = held_builds(monkeypatch)
    qtbot.mouseClick(window.live.controls.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=TIMEOUT)
    qtbot.mouseClick(window.live.controls.toggle, Qt.MouseButton.LeftButton)  # off while it builds
    release.set()
    qtbot.wait(800)
    assert drafts(fake_backend) == [] and window.canvas.picture("live") is None
    turn_on(qtbot, window, fake_backend)  # a draft made, then live turned off: a late end of it is not shown
    [job] = list(window.live._jobs)
    qtbot.mouseClick(window.live.controls.toggle, Qt.MouseButton.LeftButton)
    picture = np.zeros((64, 64, 3), np.uint8)
    window.worker.job_finished.emit(job, [(picture, 1, None)])
    assert window.canvas.picture("live") is None and len(window.live.latencies) == 1


def test_the_mask_shows_over_the_live_draft(make_window, fake_backend, qtbot):
    from desktop.ui.canvas.view import MASK_COLOUR, MASK_OPACITY  # noqa: PLC0415

    window = live_window(make_window, fake_backend)
    turn_on(qtbot, window, fake_backend)
    window.tools.set_tool(Tool.MASK)
    stroke(qtbot, window, 100)  # a mask stroke: an inpaint draft, shown over the frame
    qtbot.waitUntil(lambda: len(window.live.latencies) == 2, timeout=TIMEOUT)
    image, bounds = window.canvas.picture("live")
    assert bounds == window.doc.frame == window.doc.bounds
    shot = window.canvas.grab().toImage()
    for x in (80, 120, 160):
        draft_colour = image.scaled(bounds.width, bounds.height).pixelColor(x, 100).getRgb()[:3]
        seen = shot.pixelColor(at(window, x, 100) * shot.devicePixelRatio()).getRgb()[:3]
        masked = [d * (1 - MASK_OPACITY) + m * MASK_OPACITY for d, m in zip(draft_colour, MASK_COLOUR)]
        assert sum(abs(s - m) for s, m in zip(seen, masked)) < sum(abs(s - d) for s, d in zip(seen, draft_colour))
