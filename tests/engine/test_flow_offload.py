"""A flow model run with model offload that runs out of GPU memory is tried again once with sequential offload.

The CPU has no offload (diffusers' offloads need an accelerator): the plan is set by hand and tuning.derive,
which puts the offload hooks on a pipeline, is watched instead of run. The out-of-memory error is raised by the
transformer's first call.
"""

import pytest
import torch

from desktop.core.errors import OutOfMemory
from desktop.engine import devices, generate, tuning
from desktop.engine.models import ModelManager
from tests.engine.test_flow_generate import Recorder, request


@pytest.fixture
def offloaded(tiny_models, monkeypatch):
    """A manager whose tiny FLUX.1 is loaded with model offload; returns (manager, the plans derive was given)."""
    manager = ModelManager(devices.choose("cpu", "fp32"))
    manager.load(str(tiny_models["flux1"].folder))
    manager.current.plan = tuning.Plan(offload=True, note="model offload: the GPU has 3.2 GiB free")
    derived = []
    monkeypatch.setattr(tuning, "derive", lambda pipe, plan, device: derived.append((pipe, plan)))
    return manager, derived


def fail_first(monkeypatch, manager, times=1):
    transformer = manager.pipeline("txt2img").transformer
    forward, failed = transformer.forward, []

    def once(*args, **kwargs):
        if len(failed) < times:
            failed.append(True)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return forward(*args, **kwargs)

    monkeypatch.setattr(transformer, "forward", once)
    return failed


def test_out_of_memory_with_model_offload_retries_with_sequential_offload(tiny_models, offloaded, monkeypatch):
    manager, derived = offloaded
    failed = fail_first(monkeypatch, manager)
    state = Recorder()
    result, = generate.run(request(tiny_models, "flux1"), state, manager)
    assert result.image.shape == (64, 64, 3) and failed
    assert any(note.startswith("Out of memory: trying again with lighter settings (sequential offload")
               for note in state.notes)
    plan = manager.current.plan
    assert plan.offload and plan.sequential and plan.note.startswith("sequential offload")
    assert [(pipe, p.sequential) for pipe, p in derived] == [(manager.pipeline("txt2img"), True)], \
        "the pipeline that ran out of memory gets sequential offload's hooks"
    derived.clear()
    failed.clear()
    generate.run(request(tiny_models, "flux1"), Recorder(), manager)
    assert derived == [], "the next run keeps sequential offload"


def test_a_sequentially_offloaded_run_out_of_memory_twice_says_what_to_lower(tiny_models, offloaded, monkeypatch):
    manager, derived = offloaded
    fail_first(monkeypatch, manager, times=2)
    with pytest.raises(OutOfMemory, match="even with lighter settings. Lower the size or the batch size"):
        generate.run(request(tiny_models, "flux1"), Recorder(), manager)
    assert [p.sequential for _, p in derived] == [True], "one retry, not a loop"
