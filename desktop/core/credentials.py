"""Content credentials: a signed C2PA manifest in every picture Sfumato saves, and reading one back.

What a manifest says (and nothing more): the action, `c2pa.created` for a new picture or `c2pa.opened` (its
parent) then `c2pa.edited` for a picture the model changed (img2img, inpaint, outpaint, upscale...), with the
IPTC digital source type desktop/core/marking.py chose and the software agent "Sfumato <version>"; and one
ingredient for each parent the lineage knows (desktop/core/lineage.py): its role as its title ("init picture") and
its pixel hash, never its pixels nor its file's name (a gallery file's name holds its seed, and a person's own file
names say what they want kept); the gallery maps the hashes to its files itself. Never the prompt nor any
parameter: an export may strip those, and the manifest must not carry them out; so the manifest's title is never
the file's name (an export's may be made of the prompt). No thumbnail either (it would double the file). A picture is signed AFTER it is written, in place and atomically: when signing fails (a
broken key, a full disk), the unsigned picture stays as it was and the caller gets a sentence saying why.

The key: Sfumato makes one on first use in its data folder (`credentials/signing-key.pem`, readable by the user
only): an ES256 signing certificate issued by a local root made with it, whose own key is thrown away. C2PA
validators report such a signer as "untrusted", which is the honest answer: nobody vouches for it. The gallery's
pictures are signed with it, so they can be told from a forgery (their signer chains to this computer's root);
an export is signed with a throwaway key made for it alone, so nothing in the exported files links them to each
other or to this computer. A person with a certificate from a C2PA-trusted issuer names its chain and key in the
settings instead (then the exports are signed with it too: that is what such a certificate is for).

Nothing here touches the network: no timestamp authority, no OCSP, no remote manifests. c2pa-python (a 23 MB
native library) is imported inside the functions that need it.
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import importlib
import importlib.util
import io
import json
import os
import stat
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, lineage, marking, paths
from .errors import SfumatoError

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
KEY_FOLDER = "credentials"
KEY_FILE = "signing-key.pem"  # the private key, then the signing certificate, then the local root
ROOT_FILE = "sfumato-root.pem"  # the local root alone, for a person who wants to trust it somewhere
YEARS = 10
SIGNER_NAME = "Sfumato (self-signed)"
TITLE = "Sfumato picture"  # a manifest's title: never the file's name, which an export may make of the prompt
ROOT_NAME = "Sfumato local root"
MAX_PEM = 64 * 1024  # a certificate chain or key file larger than this is not one
_SETTINGS = {  # no network at any point, and no thumbnail
    "verify": {"ocsp_fetch": False, "remote_manifest_fetch": False},
    "builder": {"thumbnail": {"enabled": False}},
    "core": {"allowed_network_hosts": []},
}
_RELATIONSHIP = {"init": "parentOf", "source": "parentOf", "mask": "componentOf", "control": "inputTo",
                 "reference": "inputTo"}
_key_lock = threading.Lock()
_import_lock = threading.Lock()


class CredentialsError(SfumatoError):
    """A picture could not be signed, or a key cannot sign: str(error) is a sentence."""


# -- what a manifest says ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ingredient:
    role: str  # a lineage role: init, mask, control, reference, source
    pixel_hash: str


@dataclass(frozen=True)
class Provenance:
    """What a picture's manifest says: its digital source type and its parents."""

    source_type: str
    ingredients: tuple[Ingredient, ...] = ()

    @property
    def edited(self) -> bool:
        return any(_RELATIONSHIP.get(i.role) == "parentOf" for i in self.ingredients)


def provenance(request) -> Provenance:
    """The provenance of what `request` makes: marking's source type and the lineage's parents."""
    return Provenance(marking.source_type(request),
                      tuple(Ingredient(p.role, p.hash) for p in lineage.parents_of(request)))


def manifest(what: Provenance, title: str) -> dict:
    """The manifest definition c2pa signs (see the module's notes for what it holds)."""
    agent = {"name": f"Sfumato {marking.version()}"}
    ingredients, parent = [], None
    seen_parent = False
    for item in what.ingredients:
        relationship = _RELATIONSHIP.get(item.role, "componentOf")
        if relationship == "parentOf":
            if seen_parent:  # a manifest has one parent; another is a component
                relationship = "componentOf"
            seen_parent = True
        ident = f"sfumato:pixels:{item.pixel_hash}"
        ingredients.append({"title": f"{item.role} picture", "format": "image/png",
                            "relationship": relationship, "instance_id": ident,
                            "description": f"{item.role} picture, pixel hash {item.pixel_hash}"})
        if relationship == "parentOf":
            parent = ident
    if parent is not None:
        actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": [parent]}},
                   {"action": "c2pa.edited", "digitalSourceType": what.source_type, "softwareAgent": agent}]
    else:
        actions = [{"action": "c2pa.created", "digitalSourceType": what.source_type, "softwareAgent": agent}]
    return {"claim_generator_info": [{"name": "Sfumato", "version": marking.version()}], "title": title,
            "ingredients": ingredients, "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}]}


# -- the key ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    chain: bytes  # PEM certificates, the signing one first
    private_key: bytes  # PEM
    alg: str  # es256, es384, es512, ps256, ed25519
    own: bool  # Sfumato's (its kept key or an export's throwaway one), not a certificate the person gave


def key_file() -> Path:
    return paths.data_dir() / KEY_FOLDER / KEY_FILE


def signing_key(certificate: str = "", key: str = "") -> SigningKey:
    """The person's certificate chain and key when both are named, else Sfumato's own key (made on first use).
    Raises CredentialsError with a sentence when the named files cannot sign."""
    if certificate or key:
        return _user_key(certificate, key)
    return own_key()


def own_key() -> SigningKey:
    """Sfumato's own signing key, made on first use (and again when its certificate has run out). When two
    processes make it at once, the first one written wins and both sign with it."""
    with _key_lock:
        path = key_file()
        found, there = _kept_key(path)
        if found is not None and _expires(found.chain) > _now() + _dt.timedelta(days=1):
            return found
        pem, chain, _ = _make_key()
        try:
            _keep_private(path, pem + chain, replace=there)
            text = _read_small(path, "Sfumato's signing key")
            kept = _parse(text, text, path.name)
            atomic.write_with(path.parent / ROOT_FILE, lambda handle: handle.write(_root_of(kept.chain)))
        except OSError as error:
            raise CredentialsError(f"Sfumato's signing key could not be kept in {path.parent} "
                                   f"({error.strerror or error}); check that the folder can be written.") from None
        return kept


def throwaway_key() -> SigningKey:
    """A key made for one export and never kept: its signer says "Sfumato (self-signed)" like the gallery's, and
    nothing (serial, public key, dates) links the pictures signed with such keys."""
    pem, chain, _ = _make_key()
    return SigningKey(chain, pem, "es256", True)


def _kept_key(path: Path) -> tuple[SigningKey | None, bool]:
    """(the key kept at `path`, its mode narrowed to the user's, or None when there is none or it is damaged;
    whether a file is there: a damaged one is replaced, pictures signed before keeping their certificate)."""
    try:
        text = _read_small(path, "Sfumato's signing key")
    except FileNotFoundError:
        return None, False
    except (OSError, CredentialsError):
        return None, True
    try:
        if os.name == "posix" and os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
        return _parse(text, text, path.name), True
    except (OSError, CredentialsError):
        return None, True


def own_root() -> bytes:
    """The PEM root Sfumato's own key chains to (from the key file itself), b"" when there is no key yet."""
    try:
        return _root_of(_read_small(key_file(), "Sfumato's signing key"))
    except (OSError, ValueError, IndexError, CredentialsError):  # none yet, or damaged: nothing is own
        return b""


def _root_of(chain: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return x509.load_pem_x509_certificates(chain)[-1].public_bytes(serialization.Encoding.PEM)


def _make_key() -> tuple[bytes, bytes, bytes]:
    """(the signer's private key, its chain: signer then root, the root alone), all PEM. The root's own key is
    never kept: nothing else can be issued under it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    # from the start of yesterday: a time to the second would tell when a throwaway key's picture was exported
    start = _now().replace(hour=0, minute=0, second=0, microsecond=0) - _dt.timedelta(days=1)
    end = start + _dt.timedelta(days=365 * YEARS)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sfumato")])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    root_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(name(ROOT_NAME)).issuer_name(name(ROOT_NAME))
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    # What c2pa-rs asks of a signing certificate: not a CA, digitalSignature, an EKU it accepts (emailProtection),
    # issued by another certificate (a self-signed one is refused) with the issuer's key identifier.
    signer = (x509.CertificateBuilder().subject_name(name(SIGNER_NAME)).issuer_name(name(ROOT_NAME))
              .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(start).not_valid_after(end)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(usage(True), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                             critical=False)
              .sign(root_key, hashes.SHA256()))
    pem = signer_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    root_pem = root.public_bytes(serialization.Encoding.PEM)
    return pem, signer.public_bytes(serialization.Encoding.PEM) + root_pem, root_pem


def _keep_private(path: Path, data: bytes, replace: bool) -> None:
    """Write `data` at `path`, readable and writable by the user only (0600), in a folder only the user can open
    (0700). A new file is linked into place, so that of two processes the first one wins; `replace` moves it over
    a damaged or expired key instead."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "posix" and os.stat(path.parent).st_mode & 0o077:
        os.chmod(path.parent, 0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)  # a mode the umask narrowed stays narrow; one it could not is set here
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process made it first: its key is the one
            except OSError:  # a file system without hard links
                if not path.exists():
                    os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    atomic.fsync_dir(path.parent)


def _read_small(path: Path, label: str) -> bytes:
    """The bytes of a regular file of at most MAX_PEM bytes, opened without blocking (a FIFO or a device named
    by mistake never hangs the app). Raises OSError when it cannot be read, CredentialsError when it is no file."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:  # Windows refuses to open a folder
        raise CredentialsError(f"The {label} {path} is a folder; choose the .pem file inside it.") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise CredentialsError(f"The {label} {path} is a folder; choose the .pem file inside it.")
        if not stat.S_ISREG(info.st_mode):
            raise CredentialsError(f"The {label} {path} is not a file; choose a .pem file.")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_PEM + 1)
    if len(data) > MAX_PEM:
        raise CredentialsError(f"The {label} {path} is larger than {MAX_PEM // 1024} KB, so it is no PEM "
                               "certificate or key; choose the .pem file.")
    return data


def _user_key(certificate: str, key: str) -> SigningKey:
    if not (certificate and key):
        raise CredentialsError("Content credentials need both a certificate chain and its private key: name both "
                               "in File > Settings, or clear both to use Sfumato's own key.")
    texts = []
    for label, name in (("certificate chain", certificate), ("private key", key)):
        try:
            texts.append(_read_small(Path(name).expanduser(), label))
        except OSError as error:
            raise CredentialsError(f"The {label} {name} could not be read ({error.strerror or error}); choose "
                                   "another file in File > Settings.") from None
    return _parse(texts[0], texts[1], Path(certificate).name, own=False)


def _parse(chain: bytes, private: bytes, name: str, own: bool = True) -> SigningKey:
    """A SigningKey from PEM texts (a file may hold both): the certificates in order, the key, its algorithm."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        certificates = x509.load_pem_x509_certificates(chain)
    except ValueError:
        raise CredentialsError(f"{name} holds no PEM certificate; content credentials need the signing "
                               "certificate first, then its issuers.") from None
    try:
        loaded = serialization.load_pem_private_key(private, password=None)
    except (ValueError, TypeError):
        raise CredentialsError(f"The private key for {name} is not an unencrypted PEM key; export it without a "
                               "password (PKCS#8).") from None
    public = certificates[0].public_key().public_bytes(serialization.Encoding.DER,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    if loaded.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo) != public:
        raise CredentialsError(f"The private key does not belong to the first certificate of {name}; choose the "
                               "key of the signing certificate.")
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(loaded.curve.name)
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        alg = "ed25519"
    elif isinstance(loaded, rsa.RSAPrivateKey):
        alg = "ps256"
    else:
        alg = None
    if alg is None:
        raise CredentialsError(f"The key of {name} is of a kind C2PA does not sign with; use an ECDSA (P-256, "
                               "P-384, P-521), Ed25519 or RSA key.")
    pem_chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    pem_key = loaded.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return SigningKey(pem_chain, pem_key, alg, own)


def _expires(chain: bytes) -> _dt.datetime:
    from cryptography import x509

    return x509.load_pem_x509_certificates(chain)[0].not_valid_after_utc


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def check_user_key(certificate: str, key: str) -> str:
    """"" when the named chain and key sign a test picture with a manifest that validates; else a sentence."""
    if not certificate and not key:
        return ""
    try:
        found = signing_key(certificate, key)
        from PIL import Image

        picture = io.BytesIO()
        Image.new("RGB", (8, 8)).save(picture, format="PNG")
        sign_bytes(picture.getvalue(), "image/png", Provenance(marking.TRAINED), "test.png", found)
    except CredentialsError as error:
        return str(error)
    return ""


# -- signing -----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _context(anchor: bytes = b""):
    """c2pa's settings; `anchor`: the one root a reader trusts (Sfumato's own, so that its signer, and only
    its, chains to a trusted root: no trust list is shipped)."""
    c2pa = _c2pa()
    if not anchor:
        return c2pa.Context.from_dict(_SETTINGS)
    return c2pa.Context.from_dict({**_SETTINGS, "trust": {"user_anchors": anchor.decode("ascii")},
                                   "verify": {**_SETTINGS["verify"], "verify_trust": True}})


def _import_c2pa():
    """Import c2pa with its native library loaded from the package's own libs folder only. c2pa/lib.py looks in
    the current folder, ./libs and LD_LIBRARY_PATH first, where anyone could leave a library of that name; so its
    lib module is loaded first, with the search narrowed to the package's folder (in the installer too, where
    the package's folder is inside the bundle), and the package then finds it loaded."""
    with _import_lock:  # another thread must never find the bare package of the first step
        if "c2pa" not in sys.modules and "c2pa.lib" not in sys.modules:
            spec = importlib.util.find_spec("c2pa")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("c2pa")
            sys.modules["c2pa"] = importlib.util.module_from_spec(spec)  # its __path__ only: __init__ waits
            try:
                loader = importlib.import_module("c2pa.lib")
            finally:
                del sys.modules["c2pa"]
            folder = Path(loader.__file__).parent
            loader._get_possible_search_paths = lambda: [folder / "libs"]
        import c2pa

        return c2pa


def _c2pa():
    """The c2pa module, or CredentialsError saying it is missing (a source install without it)."""
    try:
        c2pa = _import_c2pa()
    except (ImportError, OSError, RuntimeError):  # OSError, RuntimeError: its native library did not load
        raise CredentialsError("Content credentials need the c2pa-python package, which is missing or broken: "
                               "pip install c2pa-python, or turn them off in File > Settings.") from None
    return c2pa


def sign_bytes(data: bytes, mime: str, what: Provenance, title: str, key: SigningKey) -> bytes:
    """The picture `data` with a manifest saying `what`, signed with `key`. Raises CredentialsError."""
    c2pa = _c2pa()

    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(key.alg, key.chain, key.private_key, None))
        with signer, c2pa.Builder.from_json(manifest(what, title), _context()) as builder:
            out = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(data), out)
    except c2pa.C2paError as error:
        reason = str(error).split("\n")[-1].strip() or type(error).__name__
        whose = "Sfumato's own key" if key.own else "the certificate you named"
        raise CredentialsError(f"The picture could not be signed with {whose} ({reason}).") from None
    return out.getvalue()


def sign_file(path: str | Path, what: Provenance, key: SigningKey) -> None:
    """Sign the picture at `path` in place: signed into memory, then written to a temporary file beside it and
    moved over it, so the file is the unsigned picture or the signed one, never half of one. Raises
    CredentialsError (the unsigned picture is then still there)."""
    path = Path(path)
    mime = MIME.get(path.suffix.lower())
    if mime is None:
        raise CredentialsError(f"{path.name} is not a PNG, JPEG or WebP picture, so it carries no content "
                               "credentials.")
    try:
        signed = sign_bytes(path.read_bytes(), mime, what, f"{TITLE}{path.suffix.lower()}", key)
        atomic.write_with(path, lambda handle: handle.write(signed))
    except OSError as error:
        raise CredentialsError(f"The signed copy of {path.name} could not be written ({error.strerror or error}); "
                               f"{_advice(error)}.") from None


def _advice(error: OSError) -> str:
    """What to do about a file that could not be written, by its cause."""
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "free some space on that disk"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "check that its folder can be written"
    return "check its folder and the disk"


@dataclass
class Signing:
    """Signs saved pictures with the key the settings name; keeps a sentence for each picture it could not sign
    and never raises: a picture that cannot be signed stays saved unsigned."""

    certificate: str = ""
    key_path: str = ""
    problems: list[str] = field(default_factory=list)
    _key: SigningKey | None = None

    @classmethod
    def from_settings(cls, settings) -> Signing | None:
        """A Signing for `settings`, or None when content credentials are turned off, or the AI mark is: the
        manifest says the picture is generated too, so it never goes where the person turned the mark off."""
        if not (getattr(settings, "content_credentials", False) and getattr(settings, "mark_ai", False)):
            return None
        return cls(getattr(settings, "credentials_certificate", ""), getattr(settings, "credentials_key", ""))

    def sign(self, path: str | Path, what: Provenance, throwaway: bool = False) -> bool:
        """Sign `path`; `throwaway` (an export): with a key made for it alone, unless the person named their
        own certificate."""
        try:
            if throwaway and not (self.certificate or self.key_path):
                key = throwaway_key()
            else:
                if self._key is None:
                    self._key = signing_key(self.certificate, self.key_path)
                key = self._key
            sign_file(path, what, key)
        except CredentialsError as error:
            reason = str(error)
            if reason.startswith(("The ", "Content ")):  # one sentence: "...: the certificate chain ..."
                reason = reason[0].lower() + reason[1:]
            self.note(f"{Path(path).name} is saved without content credentials: {reason}")
            return False
        except Exception as error:  # noqa: BLE001 - a bug in signing must never lose the picture
            self.note(f"{Path(path).name} is saved without content credentials ({type(error).__name__}: {error}).")
            return False
        return True

    def note(self, sentence: str) -> None:
        if sentence not in self.problems:
            self.problems.append(sentence)

    def summary(self) -> str:
        """One sentence for the status bar ("" when every picture was signed)."""
        if not self.problems:
            return ""
        more = len(self.problems) - 1
        return self.problems[0] + (f" ({more} more like it.)" if more else "")


# -- reading -----------------------------------------------------------------------------------------------

# UNTRUSTED: the signature holds and the picture is as signed, but no trust list vouches for the signer (none
# is shipped; Sfumato's own root is the one anchor a reader is given, which only tells its own key: own_key).
UNTRUSTED, TAMPERED, NONE, UNREADABLE = "untrusted signer", "tampered", "none", "unreadable"
EXPIRED, REVOKED, INVALID = "expired", "revoked", "invalid"  # the signer's certificate; any other failure
REMOTE = "remote"  # the picture points at a manifest on a server, which Sfumato never fetches
_SOURCE_WORDS = {marking.TRAINED: "generated by an AI model", marking.COMPOSITE: "changed by an AI model",
                 marking.CV + "digitalCapture": "a camera's picture"}


def _verdict(state: str, codes: tuple[str, ...]) -> str:
    """The state a picture's validation says: tampered only when a hash or the signature does not match what
    was signed; an expired or revoked signer's certificate as such."""
    if state != "Invalid":
        return UNTRUSTED
    if any(c.endswith(".mismatch") or c == "assertion.dataHash.mismatch" for c in codes):
        return TAMPERED
    if "signingCredential.revoked" in codes:
        return REVOKED
    if "signingCredential.expired" in codes:
        return EXPIRED
    return INVALID


@dataclass(frozen=True)
class Credentials:
    """What a picture's content credentials say, and whether they hold."""

    state: str = NONE  # untrusted signer, tampered, expired, revoked, invalid, none, unreadable, remote
    signer: str = ""  # the certificate's common name (and organisation)
    own_key: bool = False  # signed with this computer's Sfumato key: its signer chains to the local root
    software_agent: str = ""
    actions: tuple[str, ...] = ()
    source_type: str = ""  # a full IPTC URI
    ingredients: int = 0
    problems: tuple[str, ...] = ()  # the validator's failure codes, when they do not hold

    def badge(self) -> str:
        """The line the gallery shows, e.g. "Content credentials: signed with Sfumato's own key (self-signed)"."""
        if self.state == NONE:
            return ""
        if self.state == UNREADABLE:
            return "Content credentials: present but unreadable."
        if self.state == REMOTE:
            return "Content credentials: kept on a server, not fetched (Sfumato never goes online for them)."
        if self.state == TAMPERED:
            return "Content credentials: tampered (the file changed after it was signed)."
        who = self.signer or "an unnamed signer"
        if self.state == EXPIRED:
            return f"Content credentials: the signer's certificate has expired ({who})."
        if self.state == REVOKED:
            return f"Content credentials: the signer's certificate was revoked ({who})."
        if self.state == INVALID:
            return f"Content credentials: the signature does not hold ({', '.join(self.problems) or who})."
        if self.own_key:
            return "Content credentials: signed with Sfumato's own key (self-signed)."
        return f"Content credentials: signed by {who}; signer not checked against a trust list (Sfumato has none)."

    def summary(self) -> str:
        """The manifest in words, e.g. "Changed by an AI model (Sfumato 0.1.0), from 2 pictures"."""
        done = [a.removeprefix("c2pa.") for a in self.actions if a != "c2pa.opened"]  # opened: the parent, said below
        if self.source_type:
            words = _SOURCE_WORDS.get(self.source_type, self.source_type.rsplit("/", 1)[-1])
            parts = [f"{words} ({self.software_agent})" if self.software_agent else words]
        else:
            parts = [f"{done[-1] if done else 'made'} by {self.software_agent}" if self.software_agent else
                     (done[-1] if done else "")]
        if self.ingredients:
            parts.append(f"from {self.ingredients} picture{'s' if self.ingredients > 1 else ''}")
        text = ", ".join(part for part in parts if part)
        return text[:1].upper() + text[1:]


def read(path: str | Path) -> Credentials:
    """Read and validate the content credentials of a PNG, JPEG or WebP file (Sfumato's or anyone's). Never
    raises; the network is never used (a manifest kept on a server is said to be there, not fetched)."""
    path = Path(path)
    mime = MIME.get(path.suffix.lower())
    if mime is None:
        return Credentials()
    try:
        c2pa = _c2pa()
    except CredentialsError:
        return Credentials()  # without the library nothing can be told, and the picture still shows
    try:
        with open(path, "rb") as handle, c2pa.Reader(mime, handle, context=_context(own_root())) as reader:
            report = json.loads(reader.json())
            state = reader.get_validation_state() or ""
    except c2pa.C2paError as error:
        if type(error).__name__ == "_C2paManifestNotFound":
            return Credentials()
        if "Remote" in type(error).__name__ or str(error).startswith("Remote"):  # refused by _SETTINGS: no fetch
            return Credentials(REMOTE)
        return Credentials(UNREADABLE, problems=(str(error).split("\n")[0],))
    except (OSError, ValueError):
        return Credentials()
    except Exception as error:  # noqa: BLE001 - a file that trips the library up is only unreadable
        return Credentials(UNREADABLE, problems=(f"{type(error).__name__}: {error}".split("\n")[0],))
    active = report.get("manifests", {}).get(report.get("active_manifest") or "", {})
    codes = tuple(s.get("code", "") for s in report.get("validation_status") or ())
    verdict = _verdict(state, codes)
    info = active.get("signature_info") or {}
    signer = ", ".join(v for v in (info.get("common_name"), info.get("issuer")) if v)
    actions, agent, source = [], "", ""
    for assertion in active.get("assertions") or ():
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions") or ():
                actions.append(str(action.get("action", "")))
                source = source or str(action.get("digitalSourceType") or "")
                found = action.get("softwareAgent")
                found = found.get("name") if isinstance(found, dict) else found
                agent = agent or str(found or "")
    # own: the signer chains to this computer's root, the one trust anchor given (a serial is no proof: every
    # shared manifest prints it); a trusted but broken signature is no one's
    own = state == "Trusted"
    return Credentials(verdict, signer, own, agent, tuple(actions), source, len(active.get("ingredients") or ()),
                       tuple(c for c in codes if c != "signingCredential.untrusted") if state == "Invalid" else ())
