"""Hostile content credentials: a picture that points at a manifest on a server is never fetched, and junk,
truncated or oversized manifests are read as what they are, without raising, quickly."""

import io
import socket
import time
import zlib

import c2pa
import numpy as np
from PIL import Image

from desktop.core import credentials, marking


def remote_jpeg(path, url="http://127.0.0.1:9/manifest.c2pa"):
    """A JPEG whose credentials live at `url` (XMP dcterms:provenance), as a CDN-hosted manifest would."""
    key = credentials.own_key()
    source = io.BytesIO()
    Image.new("RGB", (16, 16)).save(source, format="JPEG")
    source.seek(0)
    builder = c2pa.Builder.from_json(credentials.manifest(credentials.Provenance(marking.TRAINED), "x"),
                                     credentials._context())
    builder.set_no_embed()
    builder.set_remote_url(url)
    out = io.BytesIO()
    with c2pa.Signer.from_info(c2pa.C2paSignerInfo(key.alg, key.chain, key.private_key, None)) as signer:
        builder.sign(signer, "image/jpeg", source, out)
    path.write_bytes(out.getvalue())
    return path


def test_a_manifest_kept_on_a_server_is_never_fetched(tmp_path):
    with socket.socket() as server:  # the "server": it must never be called
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.setblocking(False)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/manifest.c2pa"
        path = remote_jpeg(tmp_path / "remote.jpg", url)
        assert url.encode() in path.read_bytes()
        began = time.perf_counter()
        found = credentials.read(path)
        try:
            server.accept()
            called = True
        except BlockingIOError:
            called = False
    assert not called, "the manifest's server was called"
    assert found.badge() == ("Content credentials: kept on a server, not fetched (Sfumato never goes online for "
                             "them).")
    assert time.perf_counter() - began < 2


def png_with_chunk(path, kind: bytes, body: bytes):
    """A valid small PNG with one more chunk after IHDR (c2pa's own is caBX)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    chunk = len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    path.write_bytes(data[:33] + chunk + data[33:])
    return path


def test_junk_truncated_and_huge_manifests_are_read_without_raising(tmp_path):
    cases = [png_with_chunk(tmp_path / "junk.png", b"caBX", b"\x00\x00\x00\x10jumb" + bytes(range(256)) * 4),
             png_with_chunk(tmp_path / "empty.png", b"caBX", b""),
             png_with_chunk(tmp_path / "huge.png", b"caBX", b"\x7f\xff\xff\xffjumb" + b"\x00" * 2_000_000)]
    signed = tmp_path / "signed.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(signed)
    assert credentials.Signing().sign(signed, credentials.Provenance(marking.TRAINED))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(signed.read_bytes()[:len(signed.read_bytes()) // 2])
    (tmp_path / "not-a-picture.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPjunk")
    cases += [truncated, tmp_path / "not-a-picture.webp", tmp_path / "missing.jpg", tmp_path / "picture.gif"]
    began = time.perf_counter()
    for path in cases:
        found = credentials.read(path)
        assert found.state in (credentials.NONE, credentials.UNREADABLE, credentials.TAMPERED), (path.name, found)
        assert "\n" not in found.badge()
    assert time.perf_counter() - began < 5
