"""A Run (desktop/core/runs.py: one queued item that is several backend jobs) in the window: it waits its turn in
the queue, shows one progress bar over all its parts, saves through the worker's way into the gallery, can be
cancelled within a step, and a failure is its sentence."""

from __future__ import annotations

import numpy as np
from PIL import Image

from desktop.core.backend import GenerationJob
from desktop.core.runs import RunOutcome, part
from tests.support.requests import make_request

TIMEOUT = 10_000


class TwoPictures:
    """Two generations, then a side-by-side picture of them saved as a plot's grid would be."""

    kind = "test-two"

    def __init__(self, steps: int = 3):
        self.steps = steps

    def describe(self) -> str:
        return "Two pictures side by side"

    def pictures(self) -> int:
        return 2

    def total_steps(self) -> int:
        return 2 * self.steps

    def run(self, backend, state, context) -> RunOutcome:
        shown = []
        for k, seed in enumerate((5, 6)):
            request = make_request(model="demo", prompt="a quay", width=64, height=64, steps=self.steps, seed=seed)
            loaded = backend.load("demo", state)
            results = backend.run(GenerationJob(request.resolved()), part(state, k * self.steps, self.total_steps()))
            shown += context.save(results, loaded)
        both = np.concatenate([image for image, _, _ in shown], axis=1)
        path = context.add_picture("grids/two.png", both, "two pictures", {"sfumato_test": "yes"})
        return RunOutcome([(both, -1, path), *shown], f"Both done: saved to {path.parent}")

    def encode(self) -> dict:
        return {"kind": self.kind, "steps": self.steps}


def test_a_run_waits_its_turn_shows_one_bar_and_saves_into_the_gallery(make_window, fake_backend, qtbot):
    window = make_window()
    qtbot.waitUntil(lambda: window.gallery_store is not None, timeout=TIMEOUT)
    fake_backend.step_delay = 0.02
    bar, said = [], []
    window.worker.step.connect(lambda job, i, n, preview: bar.append((i, n)))
    window.worker.status.connect(said.append)
    job = window.submit_run(TwoPictures())
    assert window.queue.job_ids() in ([job], [])  # listed while it waits
    with qtbot.waitSignal(window.results_shown, timeout=TIMEOUT) as shown:
        pass
    saved = shown.args[0]
    assert [i for i, _ in bar] == [1, 2, 3, 4, 5, 6] and {n for _, n in bar} == {6}
    assert [seed for _, seed, _ in saved] == [-1, 5, 6]
    grid = saved[0][2]
    assert grid.parent == window.settings.output_path() / "grids"
    assert Image.open(grid).text == {"parameters": "two pictures", "sfumato_test": "yes"}
    assert all(path.is_file() for _, _, path in saved)
    qtbot.waitUntil(lambda: window.gallery.model.rowCount() == 3, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: f"Both done: saved to {grid.parent}" in said, timeout=TIMEOUT)


def test_a_run_is_cancelled_within_a_step_of_its_part(make_window, fake_backend, qtbot):
    window = make_window()
    fake_backend.step_delay = 0.05
    steps = []
    window.worker.step.connect(lambda job, i, n, preview: steps.append(i))
    job = window.submit_run(TwoPictures(steps=40))
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=TIMEOUT)
    with qtbot.waitSignal(window.worker.job_cancelled, timeout=TIMEOUT) as cancelled:
        window.cancel()
    assert cancelled.args == [job] and len(steps) < 10
    assert list(window.settings.output_path().rglob("*.png")) == []


def test_a_run_that_fails_says_what_failed(make_window, fake_backend, qtbot):
    window = make_window()
    fake_backend.run_error, fake_backend.fail_at_step = RuntimeError("the tiles fell"), 2
    with qtbot.waitSignal(window.worker.job_failed, timeout=TIMEOUT) as failed:
        window.submit_run(TwoPictures())
    assert failed.args[1] == ("Two pictures side by side failed (RuntimeError: the tiles fell). The app keeps "
                              "working; try again or another model.")
    qtbot.waitUntil(lambda: window.error_banner.isVisible(), timeout=TIMEOUT)
