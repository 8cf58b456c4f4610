"""Out of memory in the UNet or the VAE: one retry with lighter settings, else a message; memory comes back."""

import gc

import numpy as np
import psutil
import pytest
import torch

from desktop.core.errors import OutOfMemory
from desktop.core.progress import TaskState

from desktop.engine import generate
from tests.support.requests import make_request


def run(manager, model, **fields):
    statuses = []
    request = make_request(prompt="a lighthouse", model=model, width=64, height=64, steps=2, seed=3, **fields)
    return generate.run(request, TaskState(on_status=statuses.append), manager), statuses


def fail_once(module, monkeypatch, where):
    original = getattr(module, where)
    calls = {"n": 0}

    def exhausted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, where, exhausted)
    return calls


@pytest.fixture
def sd1(tiny_models):
    return str(tiny_models["sd1"].folder)


def test_out_of_memory_in_the_unet_retries_lighter_and_succeeds(cpu_manager, sd1, monkeypatch):
    expected = run(cpu_manager, sd1)[0][0].image
    pipe = cpu_manager.pipeline("txt2img")
    calls = fail_once(pipe.unet, monkeypatch, "forward")
    (result,), statuses = run(cpu_manager, sd1)
    assert calls["n"] > 1 and any("lighter settings" in s for s in statuses)
    assert np.abs(result.image.astype(int) - expected.astype(int)).mean() < 3, "the same picture, made in slices"
    processors = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
    assert processors == {"AttnProcessor2_0"}, "the fast attention is back for the next run"


def test_out_of_memory_in_the_vae_decode_retries_with_tiles(cpu_manager, sd1, monkeypatch):
    run(cpu_manager, sd1)
    vae = cpu_manager.pipeline("txt2img").vae
    calls = fail_once(vae, monkeypatch, "decode")
    (result,), statuses = run(cpu_manager, sd1)
    assert calls["n"] == 2 and result.image.shape == (64, 64, 3)


def test_out_of_memory_twice_says_what_to_lower_and_memory_returns(cpu_manager, sd1, monkeypatch):
    run(cpu_manager, sd1)
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss  # the memory held now (ru_maxrss is a high-water mark: it never returns)
    unet = cpu_manager.pipeline("txt2img").unet

    def exhausted(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9663676416 bytes")

    monkeypatch.setattr(unet, "forward", exhausted)
    for _ in range(5):
        with pytest.raises(OutOfMemory, match="even with lighter settings. Lower the size or the batch size"):
            run(cpu_manager, sd1, batch_size=2)
    monkeypatch.undo()
    gc.collect()
    assert process.memory_info().rss - before < 200 * 2**20, "no memory kept by failed runs"
    assert run(cpu_manager, sd1)[0][0].image.shape == (64, 64, 3), "and the engine keeps working"
