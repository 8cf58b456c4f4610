"""Content credentials: every saved picture and every export that keeps the AI mark carries a C2PA manifest signed
with Sfumato's own key (made on first use) or the person's certificate, which c2pa's own Reader validates apart
from the signer being untrusted; a changed pixel shows as tampering; nothing of the prompt goes in; and a picture
that cannot be signed stays saved, unsigned, with a sentence saying why."""

import datetime as dt
import json
import os
import stat
import sys
from pathlib import Path

import c2pa
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from desktop.core import credentials, lineage, marking
from desktop.core.gallery import export as exporting
from desktop.core.gallery.metadata import read_image_meta
from desktop.core.gallery.store import GalleryStore
from desktop.core.request import Images, Mode
from desktop.core.settings import Settings

from tests.support.pngs import with_one_pixel_byte_changed
from tests.support.requests import make_request

SECRET = "my secret garden"


def picture(seed=0, w=64, h=48):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def c2pa_report(path) -> tuple[str, dict, list[str]]:
    """c2pa's own Reader, on its default settings: (validation state, active manifest, status codes)."""
    mime = credentials.MIME[Path(path).suffix.lower()]
    with open(path, "rb") as handle, c2pa.Reader(mime, handle) as reader:
        report = json.loads(reader.json())
        state = reader.get_validation_state()
    codes = [s["code"] for s in report.get("validation_status") or ()]
    return state, report["manifests"][report["active_manifest"]], codes


def assert_valid_but_untrusted(path) -> dict:
    state, active, codes = c2pa_report(path)
    assert state == "Valid" and codes == ["signingCredential.untrusted"], (state, codes)
    return active


def actions_of(active: dict) -> list[dict]:
    return [a for assertion in active["assertions"] if assertion["label"].startswith("c2pa.actions")
            for a in assertion["data"]["actions"]]


@pytest.fixture
def store(tmp_path):
    return GalleryStore(tmp_path / "outputs", tmp_path / "thumbs")


def test_the_setting_is_on_by_default_and_needs_the_ai_mark():
    assert Settings().content_credentials is True
    assert credentials.Signing.from_settings(Settings()) is not None
    assert credentials.Signing.from_settings(Settings(content_credentials=False)) is None
    assert credentials.Signing.from_settings(Settings(mark_ai=False)) is None  # the manifest says "generated" too


def test_a_txt2img_picture_in_the_gallery_is_signed_as_created(store):
    request = make_request(prompt=SECRET, seed=3, width=64, height=64).resolved()
    signing = credentials.Signing()
    path = store.add_result(picture(), request, 3, "tiny", signing=signing)
    assert signing.problems == []
    active = assert_valid_but_untrusted(path)
    (action,) = actions_of(active)
    assert action["action"] == "c2pa.created" and action["digitalSourceType"] == marking.TRAINED
    assert action["softwareAgent"]["name"] == f"Sfumato {marking.version()}"
    assert active["signature_info"]["common_name"] == credentials.SIGNER_NAME
    assert read_image_meta(path)[0].parameters.startswith(SECRET)  # the PNG's own metadata is as it was
    assert marking.read_source_type(path) == marking.TRAINED
    found = credentials.read(path)
    assert (found.state, found.own_key, found.actions, found.source_type) == (
        credentials.UNTRUSTED, True, ("c2pa.created",), marking.TRAINED)
    assert found.badge() == "Content credentials: valid, untrusted signer (Sfumato's own key)."


def test_an_inpaint_names_its_parents_as_ingredients_without_their_pixels(store):
    init, mask = picture(1), picture(2)[..., 0]
    first = store.add_result(init, make_request(prompt=SECRET, width=64, height=48), 1, "tiny")
    request = make_request(mode=Mode.INPAINT, prompt=SECRET, width=64, height=48).replace(images=Images(init, mask))
    path = store.add_result(picture(3), request, 2, "tiny", signing=credentials.Signing())
    active = assert_valid_but_untrusted(path)
    assert [a["action"] for a in actions_of(active)] == ["c2pa.opened", "c2pa.edited"]
    assert actions_of(active)[1]["digitalSourceType"] == marking.COMPOSITE
    ingredients = {i["relationship"]: i for i in active["ingredients"]}
    assert ingredients["parentOf"]["title"] == first.name  # the gallery file's name
    assert lineage.pixel_hash(init) in ingredients["parentOf"]["instance_id"]
    assert ingredients["componentOf"]["title"] == "mask picture"  # not in the gallery: its role
    assert all("thumbnail" not in i and "manifest_data" not in i for i in active["ingredients"])
    assert path.stat().st_size < first.stat().st_size + 40_000  # a manifest, not the parents' pixels
    assert credentials.read(path).ingredients == 2


def test_the_manifest_never_holds_the_prompt_nor_the_parameters(store):
    request = make_request(prompt=SECRET, negative_prompt="ugly hands", seed=424242, width=64,
                           height=64).resolved()
    path = store.add_result(picture(), request, 424242, "tiny-model-name", signing=credentials.Signing())
    _, active, _ = c2pa_report(path)
    text = json.dumps(active)
    for private in (SECRET, "ugly hands", "424242", "tiny-model-name", "Steps"):
        assert private not in text


@pytest.fixture
def exported(store, tmp_path):
    def export(fmt, mode=Mode.TXT2IMG, signing=True, **options):
        init = picture(9)
        request = make_request(mode=mode, prompt=SECRET, seed=5, width=64, height=48)
        if mode != Mode.TXT2IMG:
            request = request.replace(images=Images(init, picture(8)[..., 0]))
        path = store.add_result(picture(), request, 5, "tiny", signing=credentials.Signing())
        record = store.index.by_path(store.relative(path))
        folder = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        sign = credentials.Signing() if signing else None
        written = exporting.export([(record, path)], exporting.ExportOptions(folder, format=fmt, signing=sign,
                                                                             **options))[0]
        assert sign is None or sign.problems == []
        return written

    return export


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_every_export_format_carries_a_manifest_c2pa_validates(exported, fmt):
    out = exported(fmt)
    active = assert_valid_but_untrusted(out)
    assert actions_of(active)[0]["digitalSourceType"] == marking.TRAINED
    assert marking.read_source_type(out) == marking.TRAINED
    edited = assert_valid_but_untrusted(exported(fmt, Mode.INPAINT))
    assert [a["action"] for a in actions_of(edited)] == ["c2pa.opened", "c2pa.edited"]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_stripped_export_keeps_only_the_marking(exported, fmt):
    out = exported(fmt, Mode.INPAINT, keep_metadata=False)
    active = assert_valid_but_untrusted(out)
    assert active.get("ingredients", []) == []  # the parents' hashes are lineage, stripped with the rest
    (action,) = actions_of(active)
    assert (action["action"], action["digitalSourceType"]) == ("c2pa.created", marking.COMPOSITE)
    assert SECRET.encode() not in out.read_bytes() and b"Steps" not in out.read_bytes()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("keep_metadata", [True, False])
def test_an_export_without_the_mark_carries_no_manifest(exported, fmt, keep_metadata):
    out = exported(fmt, keep_metadata=keep_metadata, keep_mark=False)
    with pytest.raises(c2pa.C2paError):
        c2pa_report(out)
    assert credentials.read(out).state == credentials.NONE and credentials.read(out).badge() == ""
    assert b"c2pa" not in out.read_bytes()


def test_a_changed_pixel_byte_reads_as_tampered(store, tmp_path):
    path = store.add_result(picture(), make_request(width=64, height=64).resolved(), 1, "tiny",
                            signing=credentials.Signing())
    changed = tmp_path / "changed.png"
    changed.write_bytes(with_one_pixel_byte_changed(path.read_bytes()))  # still a valid PNG: a real edit
    state, _, codes = c2pa_report(changed)
    assert state == "Invalid" and "assertion.dataHash.mismatch" in codes
    found = credentials.read(changed)
    assert found.state == credentials.TAMPERED and "assertion.dataHash.mismatch" in found.problems
    assert found.badge().startswith("Content credentials: tampered")
    assert credentials.read(path).state == credentials.UNTRUSTED  # the original still holds


def test_the_own_key_is_made_once_readable_by_the_user_only(sfumato_home):
    first = credentials.own_key()
    assert credentials.key_file().is_relative_to(sfumato_home)
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(credentials.key_file()).st_mode) == 0o600
    assert credentials.own_key() == first
    signer, root = x509.load_pem_x509_certificates(first.chain)
    assert signer.issuer == root.subject != signer.subject  # issued by a local root, not self-signed
    assert not signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert signer.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert (credentials.key_file().parent / credentials.ROOT_FILE).read_bytes() == root.public_bytes(
        serialization.Encoding.PEM)
    assert b"PRIVATE KEY" not in (credentials.key_file().parent / credentials.ROOT_FILE).read_bytes()


def test_signing_asks_no_timestamp_authority(store):
    """A timestamp authority is a server: signing works without one (reading never fetches either:
    tests/hardening/test_credentials_inputs.py)."""
    path = store.add_result(picture(), make_request().resolved(), 1, "tiny", signing=credentials.Signing())
    _, active, _ = c2pa_report(path)
    assert "time" not in active["signature_info"]  # no trusted timestamp: none was asked for


def test_a_broken_key_leaves_the_picture_saved_unsigned_with_a_sentence(store):
    credentials.key_file().parent.mkdir(parents=True)
    credentials.key_file().write_bytes(b"")  # unreadable as a key: a new one is made, and it signs
    assert credentials.Signing().sign(store.add_result(picture(), make_request().resolved(), 1, "tiny"),
                                      credentials.Provenance(marking.TRAINED))
    signing = credentials.Signing("/nowhere/chain.pem", "/nowhere/key.pem")
    path = store.add_result(picture(1), make_request().resolved(), 2, "tiny", signing=signing)
    assert path.is_file() and read_image_meta(path)[0].parameters  # saved, with its metadata
    assert credentials.read(path).state == credentials.NONE
    assert store.index.by_path(store.relative(path)) is not None  # and in the gallery
    (problem,) = signing.problems
    assert problem.startswith(f"{path.name} is saved without content credentials: the certificate chain "
                              "/nowhere/chain.pem could not be read")
    assert "\n" not in problem and "Traceback" not in problem


def test_a_full_disk_while_signing_keeps_the_unsigned_picture(store, monkeypatch):
    path = store.add_result(picture(), make_request().resolved(), 1, "tiny")
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(credentials.atomic, "write_with", full)
        signing = credentials.Signing()
        assert not signing.sign(path, credentials.Provenance(marking.TRAINED))  # the key cannot be kept either
        assert signing.summary().startswith(f"{path.name} is saved without content credentials: Sfumato's signing "
                                            "key could not be kept in ")
    credentials.own_key()
    monkeypatch.setattr(credentials.atomic, "write_with", full)
    signing = credentials.Signing()
    assert not signing.sign(path, credentials.Provenance(marking.TRAINED))
    assert path.read_bytes() == before
    assert signing.summary() == (f"{path.name} is saved without content credentials: the signed copy of "
                                 f"{path.name} could not be written (No space left on device); check the free "
                                 "space.")


def _certificate(tmp_path, *, ca: bool, extended=True) -> tuple[Path, Path]:
    """A certificate chain and key issued by a throwaway root: a good signing one, or a CA (which C2PA refuses)."""
    now = dt.datetime.now(dt.timezone.utc)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test root")])
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(1).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ada")]))
               .issuer_name(root_name).public_key(key.public_key()).serial_number(2)
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, ca, False, False, False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False))
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
    chain, private = tmp_path / f"chain-{ca}.pem", tmp_path / f"key-{ca}.pem"
    chain.write_bytes(builder.sign(root_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
                      + root.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return chain, private


def test_a_person_s_certificate_signs_and_a_bad_one_is_refused_in_a_sentence(store, tmp_path):
    chain, key = _certificate(tmp_path, ca=False)
    assert credentials.check_user_key(str(chain), str(key)) == ""
    path = store.add_result(picture(), make_request().resolved(), 1, "tiny",
                            signing=credentials.Signing(str(chain), str(key)))
    found = credentials.read(path)
    assert (found.state, found.own_key, found.signer) == (credentials.UNTRUSTED, False, "Ada")
    assert found.badge() == "Content credentials: valid, untrusted signer (Ada)."
    assert not credentials.key_file().exists()  # Sfumato's own key was not needed

    bad_chain, bad_key = _certificate(tmp_path, ca=True)
    problem = credentials.check_user_key(str(bad_chain), str(bad_key))
    assert problem.startswith("The picture could not be signed with the certificate named in File > Settings (")
    assert credentials.check_user_key(str(chain), "") .startswith("Content credentials need both")
    assert "does not belong" in credentials.check_user_key(str(chain), str(bad_key))
    assert "holds no PEM certificate" in credentials.check_user_key(str(key), str(key))


def test_reading_is_fast_enough_for_the_gallery(store):
    import time

    path = store.add_result(picture(w=512, h=512), make_request(width=512, height=512).resolved(), 1, "tiny",
                            signing=credentials.Signing())
    credentials.read(path)
    started = time.perf_counter()
    for _ in range(5):
        credentials.read(path)
    assert (time.perf_counter() - started) / 5 < 0.25  # it runs off the GUI thread anyway


@pytest.mark.parametrize("keep_metadata", [True, False])
def test_an_export_s_manifest_names_no_file_even_when_the_file_name_holds_the_prompt(exported, keep_metadata):
    out = exported("JPEG", Mode.INPAINT, keep_metadata=keep_metadata, template="{prompt}-{seed}")
    assert SECRET in out.name
    _, active, _ = c2pa_report(out)
    text = json.dumps(active)
    assert SECRET not in text and "00001-5" not in text and "-5." not in text
    assert len(active.get("ingredients", [])) == (2 if keep_metadata else 0)


def test_an_upscale_in_the_gallery_opens_its_source_by_the_source_s_file_name(store):
    from desktop.core.postprocess import UpscaleRequest

    source_pixels = picture(4)
    source = store.add_result(source_pixels, make_request(prompt=SECRET).resolved(), 7, "tiny")
    request = UpscaleRequest(source_pixels, 2.0, parameters=f"{SECRET}\nSteps: 2, Seed: 7", beside=str(source))
    path = store.add_picture(store.folder / "up.png", picture(5, 128, 96), request.parameters,
                             {**marking.chunks(request), **lineage.chunks(picture(5, 128, 96), request)},
                             credentials.Signing(), request)
    active = assert_valid_but_untrusted(path)
    assert [a["action"] for a in actions_of(active)] == ["c2pa.opened", "c2pa.edited"]
    assert actions_of(active)[1]["digitalSourceType"] == marking.TRAINED  # an upscale of a generated picture
    (ingredient,) = active["ingredients"]
    assert (ingredient["title"], ingredient["relationship"]) == (source.name, "parentOf")
    assert SECRET not in json.dumps(active)


def test_the_summary_says_in_words_what_was_done_by_what_from_how_many_pictures():
    edited = credentials.Credentials(credentials.UNTRUSTED, "Sfumato on this computer", True, "Sfumato 1.2",
                                     ("c2pa.opened", "c2pa.edited"), marking.COMPOSITE, 2)
    assert edited.summary() == "Edited by Sfumato 1.2, changed by a model, from 2 pictures"
    camera = credentials.Credentials(credentials.VALID, "Leica", False, "", ("c2pa.created",),
                                     marking.CV + "digitalCapture")
    assert camera.summary() == "Created, a camera's picture"
    assert camera.badge() == "Content credentials: valid (Leica)."


def test_without_the_c2pa_library_pictures_are_saved_unsigned_and_read_as_having_none(store, monkeypatch):
    signed = store.add_result(picture(), make_request().resolved(), 1, "tiny", signing=credentials.Signing())
    monkeypatch.setitem(sys.modules, "c2pa", None)  # a source install without c2pa-python
    signing = credentials.Signing()
    path = store.add_result(picture(1), make_request().resolved(), 2, "tiny", signing=signing)
    assert path.is_file() and signing.summary() == (
        f"{path.name} is saved without content credentials: content credentials need the c2pa-python package, "
        "which is missing or broken: pip install c2pa-python, or turn them off in File > Settings.")
    assert credentials.read(signed).state == credentials.NONE  # nothing can be told; nothing raises
