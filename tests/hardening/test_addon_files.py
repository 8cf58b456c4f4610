"""Hostile LoRA folders: huge or deeply nested sidecars and metadata, pipes where files should be."""

from __future__ import annotations

import json
import os
import sys

import pytest

from desktop.core import addons
from tests.core.test_addons import a1111
from tests.support.addon_files import write_lora


def test_hostile_sidecars_and_metadata_give_no_words(tmp_path):
    sd = a1111(tmp_path / "webui")
    lora = tmp_path / "webui/models/Lora"
    write_lora(lora / "a.safetensors", metadata={"ss_tag_frequency": "[" * 100_000})
    (lora / "a.json").write_text("[" * 100_000)
    (lora / "a.civitai.info").write_bytes(b"{" + b" " * (addons.MAX_SIDECAR_BYTES + 10) + b"}")
    write_lora(lora / "b.safetensors", metadata={"ss_tag_frequency": json.dumps({"d": {"x" * 500: 1}})})
    (lora / "b.civitai.info").write_text(json.dumps({"trainedWords": [f"w{i}" for i in range(50)]}))
    found = {a.name: a.trigger_words for a in addons.list_addons("lora", [sd])}
    assert found["a"] == ()
    assert len(found["b"]) == addons.MAX_TRIGGER_WORDS
    assert all(len(w) <= addons.MAX_WORD_CHARS for w in found["b"])


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are a POSIX thing here")
def test_pipes_named_like_loras_sidecars_and_previews_never_block(tmp_path):
    sd = a1111(tmp_path / "webui")
    lora = tmp_path / "webui/models/Lora"
    write_lora(lora / "real.safetensors")
    os.mkfifo(lora / "real.civitai.info")
    os.mkfifo(lora / "pipe.safetensors")
    assert [a.name for a in addons.list_addons("lora", [sd])] == ["real"]
    assert addons.find_by_hash("lora", "0" * 12, [sd]) is None
