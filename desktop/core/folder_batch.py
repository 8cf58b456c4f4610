"""A folder batch: every picture of a folder through img2img, inpaint, an upscale or a restore, into a folder of
its own with a manifest, resumable (Generate > Batch from folder, `sfumato batch`).

What it does, and the choices made:

- The pictures are the files of the input folder (not its subfolders) with a picture suffix, in name order.
- img2img and inpaint make `variations` pictures of each, with the seeds seed, seed+1, ... (A1111's batch
  continuation; the same seeds for every picture, so a seed recreates its variation), each at the picture's
  own size rounded to 8 pixels (at least 64; a picture over 4096 pixels a side is listed as too large). The
  base request (the panel's or the CLI's prompt, model, strength, sampler, ...) is used without its pictures,
  control layers and references; its wildcards and {a|b} variants are chosen by each output's seed. A random seed (-1) is drawn once, and a resumed batch keeps it.
- An upscale or a restore makes one picture of each: variations make no sense there and count as 1.
- Inpaint masks are matched by name as A1111's batch inpaint does: the file of the mask folder with the
  picture's name, else one with its stem and any picture suffix (cat.jpg <-> cat.png); a mask of another
  size is resized to the picture's. A picture without a mask is listed as failed, and the batch goes on.
- Output names keep the input's stem: img2img and inpaint write `<stem>-00.png`, `<stem>-01.png`, ...; an
  upscale or a restore writes `<stem>.png`. Pictures that share a stem (cat.jpg, cat.png) get the suffix in
  their name (`cat-jpg-00.png`, `cat-png-00.png`).
- The metadata of each output is the window's: a generation's A1111 `parameters` and Sfumato's `sfumato`
  chunk (desktop/core/outputs.py); an upscale's or restore's source parameters with A1111 Extras' keys.
- `manifest.json` (the batch's settings, then per input: status, reason, mask, outputs with seed and
  parameters) and `manifest.csv` (one row per output, or per input that made none) are rewritten atomically
  when the batch starts, at most every WRITE_EVERY seconds while it runs (every output would make a long
  batch quadratic) and when it ends, fails or is cancelled; each output is written atomically before it is listed.
- Resumable: an output that exists and is listed as done is skipped; one that exists but is not listed (the
  batch was killed between writing it and the manifest) is made again and replaces it, so after a resume every
  output exists exactly once. A picture that cannot be read (or is too large), or that the backend fails on
  (out of memory), is listed with the reason, and the batch goes on; a resume tries it again.
- A folder resumes only the same batch: the same input folder (resolved), mode, request (but a random seed),
  upscale settings, variations and mask folder as its manifest's. Another batch is refused there with a
  sentence (`check`); the default folder, `batches/<input's name>`, becomes `<name>-2`, `-3`, ... instead
  (`into_default_folder`).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import atomic, credentials, marking
from .backend import GenerationJob, UpscaleJob
from .errors import Cancelled, InvalidRequest, SfumatoError
from .filescan import files_in
from .geometry import Extent
from .imageio import ImageError, load_image, load_mask, replace_png
from .outputs import metadata_chunks
from .postprocess import DEMO_RESTORER, DEMO_UPSCALER, RESTORE_KINDS, UpscaleRequest
from .progress import TaskState
from .request import MAX_SEED, MAX_SIZE, MIN_SIZE, RANDOM_SEED, GenerationRequest, Images, Mode
from .runs import RunContext, RunOutcome, register
from .wildcards import expand_request

KIND = "folder-batch"
MODES = ("img2img", "inpaint", "upscale", "restore")
GENERATING = ("img2img", "inpaint")
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".tga", ".ppm", ".qoi",
                    ".avif")
MAX_VARIATIONS = 100
MANIFEST_JSON, MANIFEST_CSV = "manifest.json", "manifest.csv"
CSV_COLUMNS = ("input", "output", "status", "seed", "mask", "parameters", "reason")
DONE, UNREADABLE, FAILED = "done", "unreadable", "failed"
POST_UNITS = 10  # the bar's length of one upscale or restore (its tiles are not known before it runs)
WRITE_EVERY = 5.0  # seconds between the manifest's rewrites while a batch runs


@dataclass(frozen=True)
class PostSettings:
    """An upscale's or restore's settings: the upscaler (or restorer) and the scale; `restore` is the restore's
    kind (RESTORE_KINDS but "face")."""

    upscaler: str = DEMO_UPSCALER
    scale: float = 2.0
    restore: str = "restore"


def pictures_in(folder: Path) -> list[Path]:
    """The pictures of `folder` (not its subfolders, no hidden files), in name order."""
    return files_in(Path(folder), PICTURE_SUFFIXES, depth=0)


def output_size(width: int, height: int) -> Extent:
    """img2img's and inpaint's size for a picture: its own, rounded to 8 pixels, at least 64."""
    return Extent(*(max(MIN_SIZE, round(side / 8) * 8) for side in (width, height)))


def mask_finder(mask_dir: Path) -> Callable[[Path], Path | None]:
    """A picture's mask, the mask folder read once: the same file name in `mask_dir`, else the same stem with a
    picture suffix."""
    masks = pictures_in(mask_dir)
    by_name, by_stem = {p.name: p for p in masks}, {}
    for mask in masks:
        by_stem.setdefault(mask.stem, mask)
    return lambda picture: by_name.get(picture.name) or by_stem.get(picture.stem)


class FolderBatchRun:
    """Every picture of `input` through `mode` into `output` (see the module's notes). A Run (desktop/core/runs.py)."""

    kind = KIND

    def __init__(self, input: Path, mode: str, output: Path, base: GenerationRequest | None = None,
                 post: PostSettings | None = None, variations: int = 1, mask_dir: Path | None = None,
                 seed_was_random: bool | None = None):
        self.input, self.output, self.mode = Path(input), Path(output), mode
        self.mask_dir = Path(mask_dir) if mask_dir else None
        self.post = post or PostSettings()
        self.variations = variations if mode in GENERATING else 1
        self.note = "" if mode in GENERATING or variations == 1 else \
            f"{'An upscale' if mode == 'upscale' else 'A restore'} makes one picture of each; variations count " \
            "only for img2img and inpaint."
        self.base = None
        self.seed_was_random = bool(seed_was_random)
        if mode in GENERATING:
            base = base or GenerationRequest()
            seed = base.sampling.seed
            if seed_was_random is None:
                self.seed_was_random = seed == RANDOM_SEED
            if seed == RANDOM_SEED:  # drawn once: every picture's variations and a resume share it
                seed = random.randint(0, MAX_SEED)
            self.base = base.replace(mode=Mode(mode), images=Images(), controls=(), references=(),
                                     sampling=base.sampling.replace(seed=seed, batch_size=1))
        self.wrote: Callable[[Path], None] = lambda path: None  # the CLI prints each output path
        self._sources = pictures_in(self.input) if self.input.is_dir() else []

    # -- checks -------------------------------------------------------------------------------------------------

    def check(self) -> FolderBatchRun:
        """Raise InvalidRequest naming the bad setting (input, output, mode, variations, mask_dir, or a field of
        the base request) before any work."""
        if self.mode not in MODES:
            raise InvalidRequest("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}.")
        if not self.input.is_dir():
            raise InvalidRequest("input", f"{self.input} is not a folder; choose the folder of the pictures.")
        if not self._sources:
            raise InvalidRequest("input", f"there are no pictures in {self.input}.")
        if self.output.resolve() == self.input.resolve():
            raise InvalidRequest("output", "the outputs would mix with the inputs; choose another output folder.")
        if isinstance(self.variations, bool) or not isinstance(self.variations, int) \
                or not 1 <= self.variations <= MAX_VARIATIONS:
            raise InvalidRequest("variations", f"must be a whole number from 1 to {MAX_VARIATIONS}, "
                                               f"got {self.variations!r}.")
        if self.mode == "inpaint" and (self.mask_dir is None or not self.mask_dir.is_dir()):
            given = "none was given" if self.mask_dir is None else f"{self.mask_dir} is not a folder"
            raise InvalidRequest("mask_dir", f"inpaint needs a folder of masks named as the pictures ({given}).")
        if self.mode == "inpaint" and self.mask_dir.resolve() == self.input.resolve():
            raise InvalidRequest("mask_dir", "the masks are in the folder of the pictures, so each picture would be "
                                             "its own mask; choose a folder that holds only the masks.")
        if self._holds_other(self.output):
            raise InvalidRequest("output", f"{self.output} holds another batch (its manifest.json has other "
                                           "settings); choose another output folder.")
        probe = np.full((64, 64, 3), 128, np.uint8)
        if self.base is not None:
            self.base.replace(images=Images(probe, np.full((64, 64), 255, np.uint8)), width=64, height=64).validate()
        elif self.mode == "restore":
            if self.post.restore not in RESTORE_KINDS or self.post.restore == "face":
                raise InvalidRequest("restore", f"must be one of {', '.join(k for k in RESTORE_KINDS if k != 'face')}"
                                                f", got {self.post.restore!r}.")
            self._post_request(probe, "").validated()
        else:
            self._post_request(probe, "").validated()
        return self

    # -- the Run protocol -----------------------------------------------------------------------------------

    def describe(self) -> str:
        each = f", {self.variations} each" if self.variations > 1 else ""
        return f"Folder batch ({self.mode}): {len(self._sources)} pictures of {self.input.name}{each}"

    def pictures(self) -> int:
        return len(self._sources) * self.variations

    def _units(self) -> int:
        """The bar's length of one output."""
        if self.base is None:
            return POST_UNITS
        steps, strength = self.base.sampling.steps, self.base.sampling.strength
        return max(1, min(int(steps * strength), steps))

    def total_steps(self) -> int:
        return max(1, self.pictures() * self._units())

    def encode(self) -> dict:
        return {"kind": KIND, "input": str(self.input), "mode": self.mode, "output": str(self.output),
                "variations": self.variations, "mask_dir": str(self.mask_dir) if self.mask_dir else None,
                "request": self.base.to_dict() if self.base is not None else None, "post": asdict(self.post),
                "seed_was_random": self.seed_was_random}

    @classmethod
    def decode(cls, data: dict) -> FolderBatchRun:
        base = GenerationRequest.from_dict(data["request"]) if data.get("request") else None
        return cls(Path(data["input"]), data["mode"], Path(data["output"]), base, PostSettings(**data["post"]),
                   int(data["variations"]), Path(data["mask_dir"]) if data.get("mask_dir") else None,
                   bool(data.get("seed_was_random")))

    def into_default_folder(self, batches: Path) -> FolderBatchRun:
        """Send the outputs to `batches`/<input's name>, or to <name>-2, -3, ... where that one holds another batch
        (this same batch resumes in its own)."""
        name = self.input.resolve().name or "batch"
        number = 1
        while self._holds_other(Path(batches) / (name if number == 1 else f"{name}-{number}")):
            number += 1
        self.output = Path(batches) / (name if number == 1 else f"{name}-{number}")
        return self

    def _holds_other(self, folder: Path) -> bool:
        """Whether `folder`'s manifest is another batch's (not this one's, which resumes there)."""
        stored = Manifest.stored_settings(folder)
        if stored is None:
            return False
        mine = json.loads(json.dumps(self._settings()))
        if self.seed_was_random:  # drawn anew each time: the stored one is taken up
            for settings in (mine, stored):
                settings.pop("seed", None)
                if isinstance(settings.get("request"), dict) and isinstance(settings["request"].get("sampling"), dict):
                    settings["request"] = {**settings["request"],
                                           "sampling": {**settings["request"]["sampling"], "seed": None}}
        return mine != stored

    def run(self, backend, state: TaskState, context: RunContext) -> RunOutcome:
        self.check()  # a stored batch whose folders changed since it was queued
        self.output.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(self.output, self._settings())
        if self.seed_was_random and self.base is not None:  # a resumed batch keeps the seed it drew first
            seed = manifest.previous_seed()
            if seed is not None:
                self.base = self.base.replace(sampling=self.base.sampling.replace(seed=seed))
                manifest.settings = self._settings()
        names = _names(self._sources)
        _clear_leftovers(self.output, [n for s in self._sources for n, _ in self._outputs(names[s])])
        manifest.write()  # the folder is this batch's from now on
        try:
            made, skipped = self._run(backend, state, context, manifest)
        finally:  # at the end, and on a cancel or a failure: what was made is listed
            manifest.write()
        return RunOutcome([], self.summary(made, skipped, manifest))

    def _run(self, backend, state: TaskState, context: RunContext, manifest: Manifest) -> tuple[int, int]:
        """Make what is not done yet; (made, skipped)."""
        find_mask = mask_finder(self.mask_dir) if self.mode == "inpaint" else None
        sources = self._sources
        names = _names(sources)
        units, total = self._units(), self.total_steps()
        loaded = backend.load(self.base.model, state) if self.base is not None else None
        made = skipped = 0
        done = 0
        for number, source in enumerate(sources, 1):
            state.status(f"[{number}/{len(sources)}] {source.name}")
            outputs = self._outputs(names[source])
            entry = manifest.entry(source.name)
            if all(manifest.is_done(source.name, name) for name, _ in outputs):
                skipped += len(outputs)
                done += units * len(outputs)
                if entry["status"] != DONE:  # killed after the manifest listed its outputs, before it said so
                    entry.update(status=DONE, reason="")
                    manifest.write_soon()
                continue
            try:
                image, parameters, mask = self._read(source, find_mask)
            except SfumatoError as error:
                entry.update(status=UNREADABLE if isinstance(error, ImageError) else FAILED, reason=str(error))
                manifest.write_soon()
                done += units * len(outputs)
                continue
            entry.update(status="", reason="", mask=mask[1].name if mask else "")
            for name, seed in outputs:
                if manifest.is_done(source.name, name):
                    skipped += 1
                    done += units
                    continue
                share = _Share(state, done, units, total)
                try:
                    if self.base is not None:
                        request = self._generation(image, mask[0] if mask else None, seed).resolved()
                        request = expand_request(request, context.settings.models_folders)  # its wildcards, by seed
                        result = backend.run(GenerationJob(request), share)[0]
                        chunks = metadata_chunks(result.request, result.seed, loaded.name, loaded.hash, result.params,
                                                 context.settings.mark_ai)
                    else:
                        result = backend.run(UpscaleJob(self._post_request(image, parameters)), share)[0]
                        chunks = {"parameters": result.request.parameters,
                                  **marking.chunks(result.request, context.settings.mark_ai)}
                except Cancelled:
                    raise
                except SfumatoError as error:  # its request, or the backend on it (out of memory): the batch goes on
                    entry.update(status=FAILED, reason=f"{source.name}: {error}")
                    break
                path = replace_png(self.output / name, result.image, chunks)
                signing = credentials.Signing.from_settings(context.settings)
                if signing is not None and not signing.sign(path, credentials.provenance(result.request)):
                    context.status(signing.summary())  # saved, unsigned: the batch goes on
                manifest.add_output(source.name, name, result.seed, chunks["parameters"])
                manifest.write_soon()
                self.wrote(path)
                made += 1
                done += units
            if entry["status"] != FAILED:
                entry["status"] = DONE
            manifest.write_soon()
        return made, skipped

    # -- parts ----------------------------------------------------------------------------------------------

    def summary(self, made: int, skipped: int, manifest: Manifest) -> str:
        unreadable = manifest.count(UNREADABLE)
        failed = manifest.count(FAILED)
        parts = [f"{made} output{'' if made == 1 else 's'}"]
        if skipped:
            parts.append(f"{skipped} skipped (already done)")
        if unreadable:
            parts.append(f"{unreadable} unreadable")
        if failed:
            parts.append(f"{failed} failed")
        text = ", ".join(parts)
        if unreadable or failed:
            text = f"{text}: see {MANIFEST_CSV} in {self.output}"
        else:
            text = f"{text}; they and {MANIFEST_CSV} are in {self.output}"
        return f"{text}. {self.note}" if self.note else text

    def _outputs(self, stem: str) -> list[tuple[str, int]]:
        """(file name, seed) of each output of a picture whose name stem is `stem`; seed -1 for an upscale."""
        if self.base is None:
            return [(f"{stem}.png", -1)]
        width = max(2, len(str(self.variations - 1)))
        seed = self.base.sampling.seed
        return [(f"{stem}-{k:0{width}d}.png", (seed + k) % (MAX_SEED + 1)) for k in range(self.variations)]

    def _read(self, source: Path, find_mask):
        """(image, its parameters text, (mask, mask path) or None); ImageError when it cannot be read."""
        image = load_image(source)
        height, width = image.shape[:2]
        if self.base is not None and max(width, height) > MAX_SIZE:
            raise ImageError(f"{source.name} is {width}x{height}; img2img and inpaint take pictures up to "
                             f"{MAX_SIZE} pixels a side: scale it down first.")
        parameters = ""
        if self.base is None:
            from .gallery.metadata import read_image_meta

            try:
                parameters = read_image_meta(source)[0].parameters
            except (OSError, SfumatoError, ValueError):
                parameters = ""
        mask = None
        if self.mode == "inpaint":
            path = find_mask(source)
            if path is None:
                raise SfumatoError(f"{source.name} has no mask in {self.mask_dir}: add one of the same name.")
            grey = load_mask(path)
            if grey.shape != (height, width):
                grey = np.asarray(Image.fromarray(grey).resize((width, height), Image.Resampling.BILINEAR))
            mask = (np.ascontiguousarray(grey), path)
        return image, parameters, mask

    def _generation(self, image: np.ndarray, mask: np.ndarray | None, seed: int) -> GenerationRequest:
        size = output_size(image.shape[1], image.shape[0])
        return self.base.replace(width=size.width, height=size.height, images=Images(image, mask),
                                 sampling=self.base.sampling.replace(seed=seed))

    def _post_request(self, image: np.ndarray, parameters: str) -> UpscaleRequest:
        if self.mode == "restore":
            upscaler = self.post.upscaler if self.post.upscaler != DEMO_UPSCALER else DEMO_RESTORER
            return UpscaleRequest(image, 1.0, upscaler=upscaler, parameters=parameters, restore=self.post.restore)
        return UpscaleRequest(image, self.post.scale, upscaler=self.post.upscaler, parameters=parameters)

    def _settings(self) -> dict:
        settings = {"input": str(self.input.resolve()), "mode": self.mode, "variations": self.variations,
                    "mask_dir": str(self.mask_dir.resolve()) if self.mask_dir else None,
                    "seed_was_random": self.seed_was_random}
        if self.base is not None:
            settings["seed"] = self.base.sampling.seed
            settings["request"] = self.base.to_dict()
        else:
            settings["upscale"] = asdict(self.post)
        return settings


def _names(sources: list[Path]) -> dict[Path, str]:
    """The stem each picture's outputs are named after: its own, or stem-suffix when another picture shares it."""
    stems: dict[str, int] = {}
    for source in sources:
        stems[source.stem] = stems.get(source.stem, 0) + 1
    return {s: s.stem if stems[s.stem] == 1 else f"{s.stem}-{s.suffix.lstrip('.').lower()}" for s in sources}


def _clear_leftovers(folder: Path, files: list[str]) -> None:
    """Remove the temporary files a killed batch left half-written beside its outputs and manifest."""
    for name in [*files, MANIFEST_JSON, MANIFEST_CSV]:
        for leftover in folder.glob(f".{glob.escape(name)}.*.tmp"):
            leftover.unlink(missing_ok=True)


class _Share(TaskState):
    """One backend call's progress as `size` of the Run's `total` steps after `done`, whatever its own count (an
    upscale counts tiles); the Run's status lines and cancel."""

    def __init__(self, state: TaskState, done: int, size: int, total: int):
        super().__init__(on_step=lambda i, n, preview: state.step(done + min(size, i * size // max(1, n)), total,
                                                                  preview),
                         on_status=state.status)
        self._run = state

    def cancelled(self) -> bool:
        return self._run.cancelled() or super().cancelled()

    def cancel(self) -> None:
        self._run.cancel()


class Manifest:
    """manifest.json and manifest.csv of an output folder: read back on a resume, rewritten atomically."""

    def __init__(self, folder: Path, settings: dict):
        self.folder, self.settings = folder, settings
        self._previous: dict = {}
        self._written: float | None = None
        self.entries: dict[str, dict] = {}
        try:
            data = json.loads((folder / MANIFEST_JSON).read_text("utf-8"))
            self._previous = data.get("batch", {}) if isinstance(data.get("batch"), dict) else {}
            for entry in data.get("inputs", []):
                if isinstance(entry, dict) and isinstance(entry.get("input"), str):
                    outputs = [o for o in entry.get("outputs", []) if isinstance(o, dict)
                               and isinstance(o.get("file"), str)]
                    self.entries[entry["input"]] = {**_blank(entry["input"]), **entry, "outputs": outputs}
        except (OSError, ValueError, AttributeError, TypeError):
            pass  # none yet, or unreadable: the batch starts over, replacing what it makes again

    @staticmethod
    def stored_settings(folder: Path) -> dict | None:
        """The batch settings of `folder`'s manifest; None without a readable one."""
        try:
            data = json.loads((Path(folder) / MANIFEST_JSON).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data["batch"] if isinstance(data, dict) and isinstance(data.get("batch"), dict) else None

    def previous_seed(self) -> int | None:
        seed = self._previous.get("seed")
        return seed if isinstance(seed, int) and 0 <= seed <= MAX_SEED else None

    def entry(self, name: str) -> dict:
        return self.entries.setdefault(name, _blank(name))

    def is_done(self, source: str, file: str) -> bool:
        entry = self.entries.get(source)
        return entry is not None and any(o["file"] == file and o.get("status") == DONE for o in entry["outputs"]) \
            and (self.folder / file).is_file()

    def add_output(self, source: str, file: str, seed: int, parameters: str) -> None:
        entry = self.entry(source)
        entry["outputs"] = [o for o in entry["outputs"] if o["file"] != file]
        entry["outputs"].append({"file": file, "seed": seed, "status": DONE, "parameters": parameters})
        entry["outputs"].sort(key=lambda o: o["file"])

    def count(self, status: str) -> int:
        return sum(1 for e in self.entries.values() if e.get("status") == status)

    def write_soon(self) -> None:
        """Write, unless the last write is less than WRITE_EVERY seconds old."""
        if self._written is None or time.monotonic() - self._written >= WRITE_EVERY:
            self.write()

    def write(self) -> None:
        self._written = time.monotonic()
        entries = [self.entries[name] for name in sorted(self.entries)]
        atomic.write_text(self.folder / MANIFEST_CSV, _csv(entries))
        atomic.write_text(self.folder / MANIFEST_JSON, json.dumps({"batch": self.settings, "inputs": entries},
                                                                  indent=1, ensure_ascii=False))


def _blank(name: str) -> dict:
    return {"input": name, "status": "", "reason": "", "mask": "", "outputs": []}


def _csv(entries: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        rows = e["outputs"] or [{"file": "", "seed": "", "status": e.get("status", ""), "parameters": ""}]
        for o in rows:
            writer.writerow([e["input"], o["file"], o.get("status") or e.get("status", ""), o.get("seed", ""),
                             e.get("mask", ""), o.get("parameters", ""), e.get("reason", "")])
    return out.getvalue()


register(KIND, FolderBatchRun.decode)
