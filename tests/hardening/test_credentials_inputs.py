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


def test_a_forged_certificate_with_sfumato_s_serial_is_not_its_own_key(tmp_path):
    """The serial number of Sfumato's certificate is printed in every manifest it shares: a certificate with the
    same serial under another root is someone else's."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    own = x509.load_pem_x509_certificates(credentials.own_key().chain)[0]
    now = dt.datetime.now(dt.timezone.utc)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(own.issuer).issuer_name(own.issuer)  # the same names too
            .public_key(root_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(root_key, hashes.SHA256()))
    forged = (x509.CertificateBuilder().subject_name(own.subject).issuer_name(own.issuer)
              .public_key(key.public_key()).serial_number(own.serial_number)
              .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=3))
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False)
              .sign(root_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    signing = credentials.SigningKey(forged.public_bytes(pem) + root.public_bytes(pem), key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), "es256", False)
    path = tmp_path / "forged.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    credentials.sign_file(path, credentials.Provenance(marking.TRAINED), signing)
    found = credentials.read(path)
    assert not found.own_key and "own key" not in found.badge()
    assert "not checked against a trust list" in found.badge()


def test_a_library_planted_in_the_current_folder_is_not_loaded(tmp_path):
    """c2pa looks for its native library in the current folder first: Sfumato loads only the package's own."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import c2pa.c2pa

    real = Path(c2pa.c2pa._lib._name).resolve()
    for folder in (tmp_path, tmp_path / "libs"):
        folder.mkdir(exist_ok=True)
        (folder / real.name).symlink_to(real)  # a library of that name, as anyone could leave there
    code = ("from desktop.core import credentials; credentials._c2pa(); import c2pa.c2pa; "
            "print(c2pa.c2pa._lib._name)")
    root = Path(__file__).parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "LD_LIBRARY_PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == Path(c2pa.__file__).parent / "libs" / real.name


def _returns_quickly(call, seconds=5):
    import threading

    result = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "it hung"
    return result[0]


def test_a_fifo_a_device_a_folder_or_a_huge_file_named_as_the_certificate_is_refused_at_once(tmp_path):
    import os
    import sys

    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"x" * (64 * 1024 + 1))
    cases = {tmp_path: "is a folder", huge: "is larger than 64 KB"}
    if sys.platform != "win32":
        os.mkfifo(tmp_path / "fifo")
        cases.update({tmp_path / "fifo": "is not a file", "/dev/zero": "is not a file"})
    for path, says in cases.items():
        sentence = _returns_quickly(lambda: credentials.check_user_key(str(path), str(key)))
        assert says in sentence and "Error" not in sentence, sentence
        sentence = _returns_quickly(lambda: credentials.check_user_key(str(key), str(path)))
        assert says in sentence, sentence
