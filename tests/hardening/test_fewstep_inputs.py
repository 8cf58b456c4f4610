"""Hostile names, metadata, marks and LoRA lists for few-step recognition and the Fast plan: answers, never errors."""

from __future__ import annotations

import time

import pytest

from desktop.core import fewstep
from desktop.core.fewstep import LoraInfo, NoFastPath, fast_plan, kind_of, recognise
from desktop.core.modelfiles import identify
from tests.support.addon_files import write_lora


def test_a_huge_name_is_read_in_linear_time():
    started = time.perf_counter()
    assert recognise("hyper " * 40_000) == "hyper"
    assert recognise("x" * 200_000) == ""
    assert fewstep.steps_in_name("9" * 100_000 + "steps") is None
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("metadata", [
    {"ss_output_name": 42, "modelspec.title": None, "modelspec.tags": ["lcm"]},
    {"ss_output_name": "lcm " * 10_000},
    {"modelspec.title": "\u0000\udcff\u202e"},
])
def test_odd_metadata_says_nothing(metadata):
    assert recognise("plain", metadata) == ""


def test_odd_marks_and_lora_infos_are_ignored():
    assert kind_of("a", "lcm", {"a": ["lcm"]}) == "lcm"
    assert kind_of("a", "lcm", {"a": {"x": 1}}) == "lcm"
    assert kind_of("a", "", {"a": "LCM"}) == ""  # marks are the exact KINDS values
    loras = {"weird": object(), "none": None, "lcm-lora-sdv1-5": LoraInfo("lcm", "sd1")}
    assert fast_plan("sd1", "", loras).lora == "lcm-lora-sdv1-5"
    with pytest.raises(NoFastPath):
        fast_plan("sd1", "", {"weird": object()})
    with pytest.raises(NoFastPath):
        fast_plan("no such family", "lcm", {})


def test_a_lora_whose_metadata_is_huge_is_still_listed_by_its_name(tmp_path):
    path = write_lora(tmp_path / "lcm-lora-sdv1-5.safetensors", metadata={"ss_training_comment": "turbo " * 100_000})
    assert identify(path).few_step == "lcm"
    path = write_lora(tmp_path / "plain.safetensors", metadata={"ss_training_comment": "turbo " * 100_000})
    assert identify(path).few_step == ""
