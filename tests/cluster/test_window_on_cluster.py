"""The window pointed at the Ray cluster (Settings > Backend): a batch count runs on both replicas at once, each
picture previewed, saved here in seed order and equal to the local engine's; Cancel stops the cluster's work."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from desktop.core.backend import GenerationJob
from desktop.core.infotext import parse_infotext
from desktop.core.progress import TaskState
from tests.cluster.conftest import REPLICAS, TOKEN
from tests.support.requests import make_request
from tests.ui.conftest import answer_dialogs, fake_backend, make_window  # noqa: F401 - the window fixtures of tests/ui

pytestmark = pytest.mark.cluster
TIMEOUT = 120_000


def _request(**fields):
    base = {"model": "demo", "prompt": "a lighthouse at dusk", "steps": 6, "width": 64, "height": 64, "seed": 50,
            "sampler": "Euler a", "schedule": "Automatic"}
    return make_request(**{**base, **fields})


def test_the_window_on_the_cluster_spreads_a_batch_previews_saves_in_seed_order_and_cancels(cluster, local,
                                                                                          make_window, qtbot):
    backend, _ = local
    window = make_window(server_url=cluster.url, server_token=TOKEN, model="demo")
    qtbot.waitUntil(lambda: window.device_label.text() == f"Device: server at {cluster.url} ({REPLICAS} replicas)",
                    timeout=TIMEOUT)
    window.panel.set_request(_request())
    window.panel.batch_count.setValue(4)
    shown, previews, working = [], [], set()
    window.results_shown.connect(lambda saved: shown.extend(saved))
    window.worker.step.connect(lambda job, i, n, preview: (previews.append(preview is not None),
                                                           working.add(window.replicas_label.text())))
    window.generate()
    qtbot.waitUntil(lambda: len(shown) == 4, timeout=TIMEOUT)

    assert [seed for _, seed, _ in shown] == [50, 51, 52, 53]
    assert previews and all(previews)
    assert f"{REPLICAS} of {REPLICAS} replicas working" in working
    for image, seed, path in shown:
        want = backend.run(GenerationJob(_request(seed=seed).resolved()), TaskState())[0].image
        assert np.array_equal(image, want) and np.array_equal(np.asarray(Image.open(path).convert("RGB")), want)
        info = parse_infotext(Image.open(path).text["parameters"])
        assert info.params["Seed"] == str(seed) and info.prompt == "a lighthouse at dusk"
    assert sorted(p.name for p in window.settings.output_path().rglob("*.png")) == sorted(p.name for *_, p in shown)

    window.panel.set_request(_request(steps=150, width=512, height=512))  # half a minute a picture, on one thread
    window.panel.batch_count.setValue(2)
    steps = []
    window.worker.step.connect(lambda job, i, n, preview: steps.append(i))
    window.generate()
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=TIMEOUT)
    with qtbot.waitSignal(window.worker.job_cancelled, timeout=10_000):
        window.cancel()
    qtbot.waitUntil(lambda: not window.worker.is_busy(), timeout=10_000)
    assert window.progress.format() == "Cancelled" and len(list(window.settings.output_path().rglob("*.png"))) == 4
