"""desktop/server/cluster.py's `deployed` against a stand-in for Ray: it takes back only what it deployed, refuses
to replace an application of the same name, and says so when the replicas never start. (The real Ray runs in
tests/cluster.)"""

from __future__ import annotations

import sys
import types

import pytest

from desktop.server import cluster, ray_app
from desktop.server.cluster import Refused, deployed, reachable


class StandIn:
    """ray and ray.serve as far as `deployed` uses them; `calls` in order."""

    def __init__(self, apps=(), serve_running=True, gpus=0, cpus=4, run_hangs=False):
        self.calls: list[str] = []
        self.apps, self.serve_running, self.run_hangs = set(apps), serve_running, run_hangs
        stand_in = self
        ray = types.ModuleType("ray")
        ray.init = lambda **kw: self.calls.append("ray.init")
        ray.shutdown = lambda: self.calls.append("ray.shutdown")
        ray.available_resources = lambda: {"GPU": gpus, "CPU": cpus}
        serve = types.ModuleType("ray.serve")
        def start(**kw):
            self.calls.append("serve.start")
            stand_in.serve_running = True

        serve.start = start
        serve.status = lambda: types.SimpleNamespace(applications={a: None for a in stand_in.apps})
        serve.delete = lambda name: self.calls.append(f"serve.delete {name}")
        serve.shutdown = lambda: self.calls.append("serve.shutdown")

        def run(app, name, **kw):
            self.calls.append(f"serve.run {name}")
            if stand_in.run_hangs:
                import threading
                threading.Event().wait(5)

        serve.run = run
        client = types.SimpleNamespace(http_config=types.SimpleNamespace(host="0.0.0.0", port=7862))
        serve.context = types.SimpleNamespace(
            _get_global_client=lambda raise_if_no_controller_running=True: client if stand_in.serve_running else None)
        ray.serve = serve
        self.modules = {"ray": ray, "ray.serve": serve}


@pytest.fixture
def stand_in(monkeypatch):
    def make(**options):
        fake = StandIn(**options)
        for name, module in fake.modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(ray_app, "deployment", lambda *args: "the application")
        return fake

    return make


def test_it_deploys_says_the_head_s_address_and_takes_back_only_its_application(stand_in):
    fake = stand_in()
    with deployed(2, "10.0.0.5:6379", "0.0.0.0", 7862, "cpu", "fp32", None) as (url, count):
        assert (url, count) == ("http://10.0.0.5:7862", 2)
    assert fake.calls == ["ray.init", "serve.start", "serve.run sfumato", "serve.delete sfumato", "ray.shutdown"]


def test_an_application_of_the_same_name_is_refused_and_left_running(stand_in):
    fake = stand_in(apps={"sfumato"})
    with pytest.raises(Refused, match=r"^The Ray cluster at 10\.0\.0\.5:6379 already serves an application named "
                                      r"'sfumato' \(another sfumato serve, or serve deploy\)"):
        with deployed(1, "10.0.0.5:6379", "0.0.0.0", 7862, "cpu", "fp32", None):
            pass
    assert fake.calls == ["ray.init", "ray.shutdown"]


def test_a_refusal_before_deploying_deletes_nothing(stand_in):
    fake = stand_in(gpus=2)
    with pytest.raises(Refused, match="9 replicas want one GPU each and the Ray cluster has 2 free"):
        with deployed(9, "10.0.0.5:6379", "0.0.0.0", 7862, "auto", "auto", None):
            pass
    assert fake.calls == ["ray.init", "ray.shutdown"]


def test_replicas_that_never_start_are_a_sentence_and_are_taken_back(stand_in, monkeypatch):
    fake = stand_in(run_hangs=True, serve_running=False)
    monkeypatch.setattr(cluster, "DEPLOY_LIMIT_S", 0.3)
    with pytest.raises(Refused, match=r"^The 1 replica\(s\) did not start within 0.005 minutes: the cluster's CPUs may "
                                      r"be held by other work"):
        with deployed(1, None, "127.0.0.1", 7862, "cpu", "fp32", None):
            pass
    assert fake.calls[-3:] == ["serve.delete sfumato", "serve.shutdown", "ray.shutdown"]


def test_the_address_given_to_other_computers_is_never_0_0_0_0():
    assert reachable("0.0.0.0", "gpu-head:6379") == "gpu-head"
    assert reachable("127.0.0.1", None) == "127.0.0.1"
    assert reachable("::1", None) == "[::1]"
    assert reachable("0.0.0.0", None) not in ("0.0.0.0", "")
