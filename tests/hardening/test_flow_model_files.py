"""Hostile GGUF files and flow-model headers: each is refused with one sentence, quickly, without a big allocation."""

import json
import os
import struct
import time

import pytest

from desktop.core import gguf
from desktop.core.modelfiles import Family, ModelFileError, identify, identify_or_explain, scan

Q = struct.Struct("<Q")


def string(raw: bytes) -> bytes:
    return Q.pack(len(raw)) + raw


def header(version=3, tensors=0, kvs=0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, tensors, kvs)


def kv(key: bytes, kind: int, value: bytes) -> bytes:
    return string(key) + struct.pack("<I", kind) + value


def tensor(name: bytes, dims=(8, 8), kind=12, offset=0) -> bytes:
    return string(name) + struct.pack("<I", len(dims)) + b"".join(Q.pack(d) for d in dims) + struct.pack("<IQ", kind,
                                                                                                       offset)


HOSTILE = {
    "not-gguf": (b"GGML" + bytes(60), "does not start with a GGUF header"),
    "empty": (b"", "does not start with a GGUF header"),
    "a-web-page": (b"<!DOCTYPE html><html>Sign in to download</html>", "it is actually a web page, not a GGUF file"),
    "version-1": (header(version=1), "GGUF version 1, which Sfumato does not read"),
    "big-endian": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian GGUF"),
    "billions-of-tensors": (header(tensors=2**62), "more than any model has"),
    "billions-of-entries": (header(kvs=2**40), "more than any model has"),
    "cut-after-counts": (header(tensors=1, kvs=1), "truncated inside its GGUF header"),
    "huge-key": (header(kvs=1) + Q.pack(2**60), "more than the 4 KB limit"),
    "huge-string": (header(kvs=1) + string(b"k") + struct.pack("<I", 8) + Q.pack(2**50), "limit"),
    "huge-array": (header(kvs=1) + kv(b"k", 9, struct.pack("<IQ", 8, 2**61)), "more than the 4,000,000 limit"),
    "deep-arrays": (header(kvs=1) + kv(b"k", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 9, 1)
                                       + struct.pack("<IQ", 9, 1)), "nests arrays too deeply"),
    "unknown-type": (header(kvs=1) + kv(b"k", 99, b""), "a value of unknown type 99"),
    "not-utf8": (header(kvs=1) + string(b"\xff\xfe") + struct.pack("<I", 4) + bytes(4), "is not UTF-8 text"),
    "five-dims": (header(tensors=1) + tensor(b"img_in.weight", dims=(1, 2, 3, 4, 5)), "has 5 dimensions"),
    "twice": (header(tensors=2) + tensor(b"a") + tensor(b"a"), "appears twice"),
    "past-the-end": (header(tensors=1) + tensor(b"img_in.weight", offset=2**40) + bytes(64), "truncated"),
    "bad-alignment": (header(kvs=1) + kv(b"general.alignment", 4, struct.pack("<I", 0)), "alignment 0"),
    "skipped-array-past-the-end": (header(kvs=1) + kv(b"k", 9, struct.pack("<IQ", 4, 3_000_000)), "truncated"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_gguf_headers_are_refused_in_a_sentence(tmp_path, name):
    data, words = HOSTILE[name]
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(data)
    start = time.monotonic()
    with pytest.raises(ModelFileError, match=f"{name}.gguf is not a valid model file: ") as caught:
        identify(path)
    assert time.monotonic() - start < 2
    assert words in str(caught.value)
    assert str(caught.value).endswith(".") and "\n" not in str(caught.value)
    info = identify_or_explain(path)
    assert (info.kind, info.format, info.family) == ("unknown", "gguf", Family.UNKNOWN)


def test_a_header_over_the_byte_budget_is_refused(tmp_path, monkeypatch):
    """Many small strings in a row: the header's total bytes are capped, not only each count."""
    monkeypatch.setattr(gguf, "MAX_HEADER_BYTES", 64 * 1024)
    items = 20_000
    path = tmp_path / "many.gguf"
    path.write_bytes(header(kvs=1) + kv(b"tokens", 9, struct.pack("<IQ", 8, items) + string(b"ab") * items))
    with pytest.raises(ModelFileError, match="its GGUF header is larger than 64 KB"):
        identify(path)


def test_a_gguf_pipe_is_never_opened(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    os.mkfifo(tmp_path / "pipe.gguf")
    with pytest.raises(ModelFileError, match="named pipe"):
        identify(tmp_path / "pipe.gguf")
    assert scan([tmp_path]) == []


def safetensors(tensors: dict) -> bytes:
    """name -> shape, zero-byte tensors (a 0 in each shape) so only the names and shapes matter."""
    doc = {name: {"dtype": "F16", "shape": list(shape), "data_offsets": [0, 0]} for name, shape in tensors.items()}
    raw = json.dumps(doc).encode()
    return Q.pack(len(raw)) + raw


@pytest.mark.parametrize(
    "tensors",
    [
        {"double_blocks.0.img_attn.qkv.weight": (0,), "img_in.weight": (0,)},  # 1-D where 2-D is expected
        {"double_blocks.x.img_attn.qkv.weight": (0,), "img_in.weight": (0, 0, 0)},
        {"joint_blocks.": (0,), "joint_blocks..x_block.attn2": (0,)},
        {"single_stream_modulation.lin.weight": (0,), "img_in.weight": (0, 5, 0)},
        {"x_pad_token": (0,), "cap_pad_token": (0,), "cap_embedder.1.weight": (2**62, 0)},
        {f"joint_blocks.{i}.x": (0,) for i in range(20_000)},
    ],
)
def test_odd_flow_headers_never_break_identification(tmp_path, tensors):
    path = tmp_path / "odd.safetensors"
    path.write_bytes(safetensors(tensors))
    info = identify(path)
    assert info.kind == "checkpoint"


def _timed_identify(path):
    start = time.perf_counter()
    info = identify_or_explain(path)
    return info, time.perf_counter() - start


@pytest.mark.parametrize("shape", ["short-arrays", "arrays-of-arrays", "empty-strings", "many-vocabularies"])
def test_a_header_full_of_small_values_is_read_quickly(tmp_path, shape):
    """~30 MB of metadata made of the values a reader would take one at a time: the model list must not stall."""
    if shape == "short-arrays":  # arrays of 1024 bytes, short enough to be kept
        entry = struct.pack("<IQ", 0, 1024) + bytes(1024)
        entries = [kv(b"k%d" % i, 9, entry) for i in range(29_000)]
    elif shape == "arrays-of-arrays":  # 1024 arrays of 1024 bytes in each entry
        inner = struct.pack("<IQ", 0, 1024) + bytes(1024)
        entries = [kv(b"k%d" % i, 9, struct.pack("<IQ", 9, 1024) + inner * 1024) for i in range(29)]
    elif shape == "empty-strings":  # the most strings the array limit allows, each empty
        entries = [kv(b"k", 9, struct.pack("<IQ", 8, 3_900_000) + Q.pack(0) * 3_900_000)]
    else:  # a vocabulary's worth of strings in each of many arrays
        entries = [kv(b"k%d" % i, 9, struct.pack("<IQ", 8, 200_000) + Q.pack(0) * 200_000) for i in range(19)]
    path = tmp_path / f"{shape}.gguf"
    path.write_bytes(header(kvs=len(entries)) + b"".join(entries))
    info, seconds = _timed_identify(path)
    assert seconds < 2, f"{seconds:.1f} s"
    assert info.kind == "unknown" and ("strings" in info.note) == shape.endswith(("strings", "vocabularies"))


def test_a_tokenizer_sized_header_is_still_read():
    """A Qwen3 text encoder's tokenizer: 151,936 tokens and as many merges, read past; short arrays kept."""
    import io

    from pathlib import Path

    tokens = struct.pack("<IQ", 8, 151_936) + string(b"tok") * 151_936
    merges = struct.pack("<IQ", 8, 151_387) + string(b"a b") * 151_387
    scores = struct.pack("<IQ", 6, 151_936) + bytes(4 * 151_936)
    data = (header(kvs=4) + kv(b"tokenizer.ggml.tokens", 9, tokens) + kv(b"tokenizer.ggml.merges", 9, merges)
            + kv(b"tokenizer.ggml.scores", 9, scores) + kv(b"qwen3.rope.dims", 9, struct.pack("<IQ", 5, 3)
                                                           + struct.pack("<3i", 16, 24, 24)))
    meta = gguf._Reader(Path("q.gguf"), io.BytesIO(data), len(data)).header().metadata
    assert meta["tokenizer.ggml.tokens"] is None and meta["tokenizer.ggml.scores"] is None
    assert meta["qwen3.rope.dims"] == [16, 24, 24]
