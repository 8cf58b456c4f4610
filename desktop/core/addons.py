"""LoRA and textual-inversion embedding files: where they are, what they are, their A1111 hashes.

Prompts name them by file stem (``<lora:add_detail:0.7>``, ``easynegative``). They are looked for in:

- the add-on folders of every model folder Sfumato knows (its own, the ones added in the Models window):
  AUTOMATIC1111 / Forge / SD.Next ``X/models/Stable-diffusion`` -> ``X/models/Lora``, ``X/models/LyCORIS``,
  ``X/embeddings`` (SD.Next: ``X/models/embeddings``); ComfyUI and Fooocus ``X/models/checkpoints`` ->
  ``X/models/loras``, ``X/models/embeddings``; Stability Matrix ``Models/StableDiffusion`` -> ``Models/Lora``,
  ``Models/LyCORIS``, ``Models/TextualInversion``; InvokeAI ``X/models`` -> ``X/models/<base>/lora``,
  ``X/models/<base>/embedding`` (3.x-5.x; newer InvokeAI keeps each model in ``X/models/<key>/``, which the
  header scan below finds); Sfumato's own models folder -> ``loras/`` and ``embeddings/`` (made when the
  person asks to open them: ``ensure_own_folder``). A file there is taken by its suffix.
- the model folders themselves (Sfumato's own and those the person added): a ``.safetensors`` file (or a
  small ``.pt``) whose header modelfiles.identify classifies as a LoRA or an embedding.

Tensors are never loaded: a listing costs a stat per file, plus a header read per file not seen before
(cached by path, size and mtime). Sidecars (``name.civitai.info``, ``name.json``) and metadata are bounded.

Hashes are A1111's, as its infotexts write them (``Lora hashes: "name: 0123456789ab"``, ``TI hashes:``):
a LoRA's is the first 12 hex digits of the sha256 of a ``.safetensors`` file's bytes after its header (the
"addnet" hash), or of the whole file for other suffixes, unless the file's metadata carries kohya's
``sshs_model_hash``, which A1111 takes instead; an embedding's is the sha256 of the whole file. They are
kept in a JSON file in the data folder, so a file is hashed once until it changes.

When two files share a stem, ``find`` takes the one whose stem matches exactly over one that matches
ignoring case, then a ``.safetensors`` file over another suffix, then the first in search order: Sfumato's
own folders, then the folders in the order given, add-on folders before model folders, and within a
folder in name order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from desktop.core import atomic, modelfiles, paths, prompts
from desktop.core.infotext import InfotextError, parse_hashes
from desktop.core.modelfiles import Family
from desktop.core.safetensors_header import ModelFileError, open_regular, read_safetensors_header

log = logging.getLogger(__name__)

LORA, EMBEDDING = "lora", "embedding"
KINDS = (LORA, EMBEDDING)
SUFFIXES = {LORA: (".safetensors", ".pt", ".ckpt"), EMBEDDING: (".safetensors", ".pt", ".bin")}
OWN_SUBFOLDER = {LORA: "loras", EMBEDDING: "embeddings"}
PREVIEW_SUFFIXES = ("png", "jpg", "jpeg", "webp", "gif")
MAX_DEPTH = 6  # folders below an add-on folder (people sort LoRAs into subfolders)
MAX_FILES = 20_000  # files looked at in one listing: a huge folder is not walked to its end
MAX_HEADER_BYTES = 32 * 2**20  # a LoRA's header with cover images is a few MB
MAX_PICKLE_BYTES = 16 * 2**20  # a .pt is only opened for its family when it is this small
MAX_SIDECAR_BYTES = 2 * 2**20
MAX_TAG_FREQUENCY_CHARS = 4 * 2**20
MAX_TRIGGER_WORDS = 8
MAX_WORD_CHARS = 100
TAG_FREQUENCY_WORDS = 5

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class AddonFile:
    kind: str  # "lora" | "embedding"
    name: str  # the file stem, as prompts name it
    path: Path
    size: int
    family: Family
    preview: Path | None
    trigger_words: tuple[str, ...]
    few_step: str = ""  # a LoRA's few-step kind (desktop/core/fewstep.py KINDS) from its name and metadata; "" not


# ------------------------------------------------------------------- folders


def own_folder(kind: str) -> Path:
    """Where Sfumato's own LoRAs or embeddings go: ``<models folder>/loras`` or ``/embeddings``."""
    return paths.models_dir() / OWN_SUBFOLDER[_check_kind(kind)]


def ensure_own_folder(kind: str) -> Path:
    """own_folder(kind), made if it is not there yet (to open it for the person)."""
    folder = own_folder(kind)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def model_folders(folders: Iterable[str | os.PathLike]) -> list[Path]:
    """Sfumato's own models folder, then ``folders`` (the settings' models_folders), each once."""
    found: list[Path] = []
    for folder in [paths.models_dir(), *(Path(f).expanduser() for f in folders)]:
        if folder not in found:
            found.append(folder)
    return found


def addon_folders(kind: str, folders: Iterable[str | os.PathLike]) -> list[Path]:
    """The existing folders where the apps of ``folders`` keep files of ``kind`` (see the module's notes)."""
    _check_kind(kind)
    found: list[Path] = []
    for folder in model_folders(folders):
        for candidate in _layout_folders(kind, folder):
            if candidate not in found and candidate.is_dir():
                found.append(candidate)
    return found


def _layout_folders(kind: str, folder: Path) -> list[Path]:
    if folder == paths.models_dir():
        return [own_folder(kind)]
    name, parent = folder.name.lower(), folder.parent
    lora = kind == LORA
    if name == "stable-diffusion" and parent.name.lower() == "models":  # A1111, Forge, SD.Next
        return [parent / "Lora", parent / "LyCORIS"] if lora else [parent.parent / "embeddings", parent / "embeddings"]
    if name == "checkpoints" and parent.name.lower() == "models":  # ComfyUI, Fooocus
        return [parent / "loras"] if lora else [parent / "embeddings"]
    if name == "stablediffusion" and parent.name.lower() == "models":  # Stability Matrix
        return [parent / "Lora", parent / "LyCORIS"] if lora else [parent / "TextualInversion"]
    if name == "models" and ((parent / "invokeai.yaml").is_file()
                             or any((folder / base).is_dir() for base in ("sd-1", "sd-2", "sdxl"))):  # InvokeAI
        try:
            bases = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return []
        return [base / ("lora" if lora else "embedding") for base in bases]
    return []


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"{kind!r} is not an add-on kind; use one of {', '.join(KINDS)}")
    return kind


# ------------------------------------------------------------------- listing


@dataclass(frozen=True)
class _Found:
    path: Path
    size: int
    mtime_ns: int
    dedicated: bool  # in an add-on folder: taken by its suffix
    siblings: dict[str, str]  # lower-case name -> name, of the files beside it


@dataclass(frozen=True)
class _Header:
    kind: str
    family: Family
    words: tuple[str, ...]  # trigger words from the metadata
    sshs_hash: str  # kohya's sshs_model_hash when it is a sha256, else ""
    few_step: str = ""  # modelfiles.ModelInfo.few_step


_headers: dict[tuple[str, int, int], _Header] = {}
_headers_lock = threading.Lock()


def list_addons(kind: str, folders: Iterable[str | os.PathLike]) -> list[AddonFile]:
    """Every file of ``kind`` in the add-on and model folders of ``folders``, sorted by name.

    A file found twice (through a link, or in a folder given twice) is listed once. Never raises for a bad
    file. Reads headers the first time it sees a file; call it off the GUI thread.
    """
    _check_kind(kind)
    listed: list[AddonFile] = []
    for found in _candidates(kind, folders):
        header = _header(found)
        if not _is_kind(found, header, kind):
            continue
        words = _unique_words([*_sidecar_words(found), *header.words])
        listed.append(AddonFile(kind, found.path.stem, found.path, found.size, header.family, _preview(found),
                                words, header.few_step))
    return sorted(listed, key=lambda a: (a.name.lower(), str(a.path)))


def find(kind: str, name: str, folders: Iterable[str | os.PathLike]) -> Path | None:
    """The file a prompt means by ``name`` (its stem, matched ignoring case), or None.

    Of several, the choice in the module's notes. Reads no header of a file whose stem does not match.
    """
    _check_kind(kind)
    name = name.strip()
    if not name or "/" in name or "\\" in name:
        return None
    wanted = name.casefold()
    matches = [f for f in _candidates(kind, folders)
               if f.path.stem.casefold() == wanted and _is_kind(f, _header(f), kind)]
    if not matches:
        return None
    order = {id(f): i for i, f in enumerate(matches)}
    best = min(matches, key=lambda f: (f.path.stem != name, f.path.suffix.lower() != ".safetensors", order[id(f)]))
    return best.path


def _candidates(kind: str, folders: Iterable[str | os.PathLike]) -> Iterator[_Found]:
    folders = list(folders)
    seen: set[Path] = set()
    budget = [MAX_FILES]
    demo = paths.demo_model_dir()
    for folder in addon_folders(kind, folders):
        yield from _walk(folder, MAX_DEPTH, SUFFIXES[kind], True, seen, budget, demo)
    for folder in model_folders(folders):
        yield from _walk(folder, modelfiles.SCAN_DEPTH, (".safetensors", ".pt"), False, seen, budget, demo)


def _walk(folder: Path, depth: int, suffixes: Sequence[str], dedicated: bool, seen: set[Path],
          budget: list[int], skip: Path) -> Iterator[_Found]:
    if folder == skip:
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    if not dedicated and any(e.name == "model_index.json" for e in entries):
        return  # a diffusers model: its parts are not add-ons
    siblings = {e.name.lower(): e.name for e in entries}
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                subfolders.append(Path(entry.path))
                continue
            if Path(entry.name).suffix.lower() not in suffixes or not entry.is_file():
                continue
            stat = entry.stat()
            key = Path(entry.path).resolve()
        except (OSError, RuntimeError):
            continue
        if key in seen:
            continue
        if budget[0] <= 0:
            return
        budget[0] -= 1
        seen.add(key)
        yield _Found(Path(entry.path), stat.st_size, stat.st_mtime_ns, dedicated, siblings)
    if depth > 0:
        for sub in subfolders:
            if not sub.name.endswith(".config"):
                yield from _walk(sub, depth - 1, suffixes, dedicated, seen, budget, skip)


def _is_kind(found: _Found, header: _Header, kind: str) -> bool:
    if found.dedicated:  # trusted by its folder, unless its header says it is another known thing
        return header.kind in (kind, "unknown")
    return header.kind == kind


def _header(found: _Found) -> _Header:
    key = (str(found.path), found.size, found.mtime_ns)
    with _headers_lock:
        cached = _headers.get(key)
    if cached is not None:
        return cached
    header = _read_header(found)
    with _headers_lock:
        if len(_headers) > 4 * MAX_FILES:
            _headers.clear()
        _headers[key] = header
    return header


def _read_header(found: _Found) -> _Header:
    path = found.path
    if path.suffix.lower() != ".safetensors" and found.size > MAX_PICKLE_BYTES:
        return _Header("unknown", Family.UNKNOWN, (), "")
    try:
        info = modelfiles.identify(path)
    except Exception as error:  # noqa: BLE001 - one bad file must not break a listing
        if not isinstance(error, ModelFileError):
            log.warning("could not identify %s", path, exc_info=True)
        return _Header("unknown", Family.UNKNOWN, (), "")
    words, sshs = (), ""
    if info.kind in KINDS and path.suffix.lower() == ".safetensors":
        try:
            metadata = read_safetensors_header(path, max_header_bytes=MAX_HEADER_BYTES).metadata
        except ModelFileError:
            metadata = {}
        words = _metadata_words(metadata)
        sshs = metadata.get("sshs_model_hash", "").strip().lower()
        sshs = sshs if _HEX64.fullmatch(sshs) else ""
    return _Header(info.kind, info.family, words, sshs, info.few_step)


# ------------------------------------------------------- previews, trigger words


def _preview(found: _Found) -> Path | None:
    """The picture beside the file, as A1111 and Civitai Helper store it (name.png, name.preview.png, ...)."""
    stem = found.path.stem
    for suffix in PREVIEW_SUFFIXES:
        for candidate in (f"{stem}.{suffix}", f"{stem}.preview.{suffix}"):
            name = found.siblings.get(candidate.lower())
            if name is not None:
                return found.path.with_name(name)
    return None


def _metadata_words(metadata: dict[str, str]) -> tuple[str, ...]:
    words = [metadata.get("modelspec.trigger_phrase", "")]
    text = metadata.get("ss_tag_frequency", "")
    if text and len(text) <= MAX_TAG_FREQUENCY_CHARS:
        try:
            frequency = json.loads(text)
        except (ValueError, RecursionError):
            frequency = None
        counts: dict[str, float] = {}
        if isinstance(frequency, dict):
            for tags in frequency.values():
                if isinstance(tags, dict):
                    for tag, count in tags.items():
                        if isinstance(count, (int, float)) and not isinstance(count, bool):
                            counts[tag.strip()] = counts.get(tag.strip(), 0) + count
        words += sorted(counts, key=lambda tag: -counts[tag])[:TAG_FREQUENCY_WORDS]
    return _unique_words(words)


def _sidecar_words(found: _Found) -> list[str]:
    """A1111's "activation text" (name.json), then Civitai's "trainedWords" (name.civitai.info)."""
    stem = found.path.stem
    words: list[str] = []
    a1111 = _read_sidecar(found, f"{stem}.json")
    if isinstance(a1111.get("activation text"), str):
        words.append(a1111["activation text"])
    civitai = _read_sidecar(found, f"{stem}.civitai.info")
    trained = civitai.get("trainedWords")
    if isinstance(trained, list):
        words += [w for w in trained if isinstance(w, str)]
    return words


def _read_sidecar(found: _Found, name: str) -> dict:
    actual = found.siblings.get(name.lower())
    if actual is None:
        return {}
    try:
        with open_regular(found.path.with_name(actual)) as f:
            raw = f.read(MAX_SIDECAR_BYTES + 1)
        if len(raw) > MAX_SIDECAR_BYTES:
            return {}
        value = json.loads(raw.decode("utf-8", errors="replace"))
    except (OSError, ValueError, RecursionError, ModelFileError):
        return {}
    return value if isinstance(value, dict) else {}


def _unique_words(words: Iterable[str]) -> tuple[str, ...]:
    kept: dict[str, str] = {}
    for word in words:
        word = " ".join(word.split())[:MAX_WORD_CHARS].strip(" ,")
        if word and word.casefold() not in kept and len(kept) < MAX_TRIGGER_WORDS:
            kept[word.casefold()] = word
    return tuple(kept.values())


# -------------------------------------------------------------------- hashes


def hash_cache_file() -> Path:
    return paths.data_dir() / "addon-hashes.json"


_cache_lock = threading.Lock()


def short_hash(kind: str, path: str | os.PathLike, *, cache: str | os.PathLike | None = None) -> str:
    """A1111's short hash of a LoRA or an embedding (12 hex digits), as in "Lora hashes" / "TI hashes".

    Raises ModelFileError when the file can't be read. ``cache``: the JSON file (default: hash_cache_file()).
    """
    return _full_hash(_check_kind(kind), Path(path), Path(cache) if cache else hash_cache_file())[:12]


def find_by_hash(kind: str, short: str, folders: Iterable[str | os.PathLike], *,
                 cache: str | os.PathLike | None = None) -> Path | None:
    """The file of ``kind`` whose hash starts with ``short`` (at least 8 hex digits), or None.

    Files whose hash is known (cached, or in their metadata) are compared first; then the others are hashed
    until one matches. Hashing reads whole files: call it off the GUI thread.
    """
    _check_kind(kind)
    short = short.strip().lower()
    if len(short) < 8 or not re.fullmatch(r"[0-9a-f]+", short):
        return None
    file = Path(cache) if cache else hash_cache_file()
    store = _load_cache(file)
    unknown = []
    for found in _candidates(kind, folders):
        header = _header(found)
        if not _is_kind(found, header, kind):
            continue
        known = (header.sshs_hash if kind == LORA else "") or store.get(_cache_key(kind, found.path, found.size,
                                                                                 found.mtime_ns))
        if isinstance(known, str) and known:
            if known.startswith(short):
                return found.path
        else:
            unknown.append(found)
    for found in sorted(unknown, key=lambda f: f.size):
        try:
            if _full_hash(kind, found.path, file).startswith(short):
                return found.path
        except ModelFileError:
            continue
    return None


def _full_hash(kind: str, path: Path, file: Path) -> str:
    try:
        st = path.stat()
    except OSError as error:
        raise ModelFileError(path, f"it could not be read ({error.strerror or error}).") from error
    if kind == LORA and path.suffix.lower() == ".safetensors":
        found = _Found(path, st.st_size, st.st_mtime_ns, True, {})
        sshs = _header(found).sshs_hash
        if sshs:
            return sshs
    key = _cache_key(kind, path, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        known = _load_cache(file).get(key)
    if isinstance(known, str) and _HEX64.fullmatch(known):
        return known
    after_header = kind == LORA and path.suffix.lower() == ".safetensors"
    digest = _sha256(path, after_header)
    with _cache_lock:
        store = _load_cache(file)
        store[key] = digest
        try:
            atomic.write_json(file, store)
        except OSError:
            log.warning("could not write the add-on hash cache %s", file, exc_info=True)
    return digest


def _cache_key(kind: str, path: Path, size: int, mtime_ns: int) -> str:
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        resolved = path
    return f"{kind}|{resolved}|{size}|{mtime_ns}"


def _sha256(path: Path, after_header: bool) -> str:
    """sha256 of the file, or (A1111's addnet hash) of a safetensors file's bytes after its header."""
    sha = hashlib.sha256()
    try:
        with open_regular(path) as f:
            if after_header:
                n = int.from_bytes(f.read(8), "little")
                f.seek(8 + n)
            while block := f.read(2**20):
                sha.update(block)
    except OSError as error:
        raise ModelFileError(path, f"it could not be read ({error.strerror or error}).") from error
    return sha.hexdigest()


def _load_cache(file: Path) -> dict[str, str]:
    try:
        with open_regular(file) as f:
            raw = f.read(64 * 2**20)
        value = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError, RecursionError, ModelFileError):
        return {}
    return value if isinstance(value, dict) else {}


# ------------------------------------------------- "Use all parameters" check


@dataclass(frozen=True)
class AddonCheck:
    """What a picture's prompts need: found under another name (by hash), or missing."""

    renamed_loras: dict[str, str]  # LoRA name in the picture -> the stem of the local file with its hash
    renamed_embeddings: dict[str, str]
    missing_loras: tuple[str, ...] = ()
    missing_embeddings: tuple[str, ...] = ()

    def rename(self, text: str) -> str:
        """``text`` with renamed LoRA tags and embedding words naming the local files."""

        def tag(match: re.Match) -> str:
            if match.group(1).lower() not in prompts.LORA_KINDS:
                return match.group(0)
            name, colon, rest = match.group(2).partition(":")
            new = self.renamed_loras.get(name.strip())
            return match.group(0) if new is None else f"<{match.group(1)}:{new}{colon}{rest}>"

        if self.renamed_loras:
            text = prompts.EXTRA_NETWORK.sub(tag, text)
        for old, new in self.renamed_embeddings.items():
            text = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", lambda _m, new=new: new, text)
        return text

    def message(self) -> str:
        """What is missing and where to put it, for the window; "" when nothing is."""
        parts = []
        if self.missing_loras:
            parts.append(f"Missing LoRAs: {', '.join(self.missing_loras)} — put them in {own_folder(LORA)} "
                         "(or any model folder) and Sfumato will find them.")
        if self.missing_embeddings:
            parts.append(f"Missing embeddings: {', '.join(self.missing_embeddings)} — put them in "
                         f"{own_folder(EMBEDDING)} (or any model folder) and Sfumato will find them.")
        return " ".join(parts)


def lora_names(text: str) -> list[str]:
    """The LoRA names of the ``<lora:...>`` / ``<lyco:...>`` tags in a prompt, each once, in order."""
    names: list[str] = []
    for match in prompts.EXTRA_NETWORK.finditer(text):
        if match.group(1).lower() not in prompts.LORA_KINDS:
            continue
        name = match.group(2).split(":", 1)[0].strip()
        if name and "=" not in name and name not in names:
            names.append(name)
    return names


def check_prompts(prompt: str, params: dict[str, str], folders: Iterable[str | os.PathLike], *,
                  cache: str | os.PathLike | None = None) -> AddonCheck:
    """Find the LoRAs of a picture's prompt and the embeddings its ``TI hashes`` name, by name, then by hash.

    ``params``: the picture's infotext parameters (``Lora hashes``, ``TI hashes``: "name: hash, ...").
    Hashing may read whole files: call it off the GUI thread.
    """
    folders = list(folders)
    lora_hashes = _hashes(params, "Lora hashes")
    ti_hashes = _hashes(params, "TI hashes")
    renamed_loras: dict[str, str] = {}
    renamed_embeddings: dict[str, str] = {}
    missing_loras, missing_embeddings = [], []
    for name in lora_names(prompt):  # as in A1111, the negative prompt's tags are words, not LoRAs
        if find(LORA, name, folders) is not None:
            continue
        short = lora_hashes.get(name.replace(":", "").replace(",", ""), "")
        found = find_by_hash(LORA, short, folders, cache=cache) if short else None
        if found is not None:
            renamed_loras[name] = found.stem
        else:
            missing_loras.append(name)
    for name, short in ti_hashes.items():
        if find(EMBEDDING, name, folders) is not None:
            continue
        found = find_by_hash(EMBEDDING, short, folders, cache=cache)
        if found is not None:
            renamed_embeddings[name] = found.stem
        else:
            missing_embeddings.append(name)
    return AddonCheck(renamed_loras, renamed_embeddings, tuple(missing_loras), tuple(missing_embeddings))


def _hashes(params: dict[str, str], key: str) -> dict[str, str]:
    value = next((v for k, v in params.items() if k.lower() == key.lower()), "")
    try:
        return parse_hashes(value) if value else {}
    except InfotextError:
        return {}
