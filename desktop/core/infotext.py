"""AUTOMATIC1111's "parameters" text (its PNG text chunk): write it and read it.

AUTOMATIC1111, Forge, Fooocus (A1111 scheme) and Civitai write::

    <prompt: any number of lines>
    Negative prompt: <negative prompt: any number of lines>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: name

Reading (parse_infotext never raises and runs in linear time):
- ``\\r\\n`` and ``\\r`` count as ``\\n``; the text is stripped.
- One JSON object with a "prompt" or "negative_prompt" key is Fooocus's own
  scheme: keys that mean the same as an A1111 key are renamed (_FOOOCUS_NAMES;
  "resolution" "(w, h)" becomes "Size" "wxh"), others kept, non-text values as JSON.
- The last line is the parameters line when it holds 3+ ``Key: value`` pairs
  (A1111's rule; stray segments are dropped) or nothing but 1+ pairs, and does
  not start with ``Negative prompt:`` (as a line or as its first key).
- The first line starting with ``Negative prompt:`` opens the negative prompt;
  the lines above are the prompt. Both are stripped; inner lines kept as written
  (a prompt in quotes keeps its quotes, as in A1111).
- Key: a word character, then word characters, spaces, ``-`` ``/`` ``.``.
  Value: a JSON string (decoded); else, when it starts with ``[`` or ``{`` and
  the brackets balance, the bracketed text as written (Civitai's
  ``Civitai resources: [...]``, ``Hashes: {...}``: inner commas stay); else the
  text up to the next comma, stripped.

Writing, as A1111 writes it (so A1111, Forge and Civitai show the prompts as typed):
- The prompt and the negative prompt are written as raw lines; ``\\r\\n`` and
  ``\\r`` become ``\\n`` (a browser's text box does the same). A1111 strips each
  line, and a prompt line starting ``Negative prompt:`` starts its negative
  prompt: A1111's own pictures have the same limits. The exact text is kept in
  Sfumato's own ``sfumato`` chunk (outputs.metadata_chunks), which Sfumato reads
  first. An empty negative prompt is left out, except after a prompt with
  nothing after it whose last line reads as parameters: an empty
  ``Negative prompt:`` line then keeps that line the prompt's (in A1111 too).
- A parameter value is JSON-quoted when it contains ``,`` ``:`` or a line
  break, has whitespace at either end, or starts with ``"`` ``[`` or ``{``;
  parameters read back exactly, in order.
- InfotextError for a key outside the key rule or ending in a space, a first
  key ``Negative prompt`` (it would read as the negative), a value not str.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .request import GenerationRequest, Sampling

NEGATIVE_MARKER = "Negative prompt:"
#: Forge's keys for a flow-matching model's distilled guidance (FLUX.1 dev) and noise schedule shift. The engine
#: writes them (Result.params: "Distilled CFG Scale" for variants that take it, "Shift" when not 0); from_request
#: puts them after "CFG scale", where Forge writes them, and read_flow_sampling reads them back.
DISTILLED_CFG_KEY, SHIFT_KEY = "Distilled CFG Scale", "Shift"
#: The engine writes "Decoder: TAESD" when the tiny TAESD decoder made the picture's pixels (request.decoder "tiny";
#: no entry: the model's own VAE) and "Runtime: OpenVINO" when OpenVINO ran the model (no entry: PyTorch). The
#: decoder reads back into the request (read_decoder); the runtime is a record, not a request value: it is shown
#: and kept with the text, and a picture that names one is read like any other.
DECODER_KEY, TAESD = "Decoder", "TAESD"
RUNTIME_KEY = "Runtime"
_KEY = re.compile(r"\s*(\w[\w \-/.]*):\s*")
_WRITABLE_KEY = re.compile(r"\w(?:[\w \-/.]*[\w\-/.])?")
_AFTER_VALUE = re.compile(r"\s*(?:,|$)")
_RAW = re.compile(r"[^,]*")
_BRACKET_OR_QUOTE = re.compile(r'[\[\]{}"]')
_SIZE = re.compile(r"\s*(\d{1,9})\s*[x×]\s*(\d{1,9})\s*")
_FOOOCUS_RESOLUTION = re.compile(r"\(\s*(\d{1,9})\s*,\s*(\d{1,9})\s*\)")
_FOOOCUS_NAMES = {
    "steps": "Steps", "guidance_scale": "CFG scale", "seed": "Seed", "sampler": "Sampler",
    "scheduler": "Schedule type", "base_model": "Model", "base_model_hash": "Model hash", "vae": "VAE",
    "clip_skip": "Clip skip", "version": "Version",
}


class InfotextError(ValueError):
    """A key or value that cannot be written, or a value that does not read as asked."""


@dataclass(frozen=True)
class Infotext:
    prompt: str = ""
    negative_prompt: str = ""
    params: dict[str, str] = field(default_factory=dict)  # in text order; values unquoted


def format_infotext(info: Infotext) -> str:
    """The parameters text for info, written as A1111 writes it. Raises InfotextError.

    parse_infotext reads the parameters back equal; the prompts come back with line breaks as ``\\n``,
    stripped, unless a line of the prompt starts ``Negative prompt:`` (see the module's notes).
    """
    negative, params = _lines(info.negative_prompt), _params_text(info.params)
    text = _join(_lines(info.prompt), negative, params)
    if not params and not negative and _params_line(text.rsplit("\n", 1)[-1]):
        # With nothing after it, a prompt whose last line looks like parameters would be read as them (by A1111
        # too): an empty negative prompt line after it keeps it the prompt.
        text = f"{text}\n{NEGATIVE_MARKER}"
    return text


def parse_infotext(text: str) -> Infotext:
    """Read A1111 / Forge / Civitai / Fooocus parameters text. Never raises."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if text.startswith("{"):
        fooocus = from_fooocus_json(text)
        if fooocus is not None:
            return fooocus
    lines = text.split("\n")
    params = _params_line(lines[-1])
    if params:
        lines.pop()
    marker = next((i for i, line in enumerate(lines) if line.lstrip().startswith(NEGATIVE_MARKER)), len(lines))
    negative = ""
    if marker < len(lines):
        negative = "\n".join([lines[marker].lstrip()[len(NEGATIVE_MARKER) :], *lines[marker + 1 :]])
    return Infotext("\n".join(lines[:marker]).strip(), negative.strip(), params or {})


def parse_size(value: str) -> tuple[int, int]:
    """Read "512x768" as (512, 768). Raises InfotextError for anything else."""
    found = _SIZE.fullmatch(value)
    if found is None:
        raise InfotextError(f"not a size like 512x768: {value!r}")
    return int(found[1]), int(found[2])


def parse_hashes(value: str) -> dict[str, str]:
    """Name -> hash from "Lora hashes"/"TI hashes" ("a: 1234, b: 5678") or Civitai's "Hashes" (a JSON object).

    Raises InfotextError when the value is neither.
    """
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise InfotextError(f"not a JSON object of hashes: {value!r}")
        return {key: _as_text(digest) for key, digest in data.items()}
    hashes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, colon, digest = item.rpartition(":")
        if not colon or not name.strip():
            raise InfotextError(f"not a list of 'name: hash': {value!r}")
        hashes[name.strip()] = digest.strip()
    return hashes


def from_request(request: GenerationRequest, seed: int, model_name: str, model_hash: str = "",
                 extra: tuple[tuple[str, str], ...] = ()) -> Infotext:
    """The infotext of one image of a resolved request, in A1111's keys and wording; `extra`: what the run
    adds (Result.params: "Lora hashes", "TI hashes", "Pad conds", ...), after the request's values."""
    sampling, inpaint, mode = request.sampling, request.inpaint, request.mode.value
    params = {"Steps": str(sampling.steps), "Sampler": sampling.sampler, "Schedule type": sampling.schedule,
              "CFG scale": _number(sampling.cfg_scale), "Seed": str(seed), "Size": f"{request.width}x{request.height}",
              "Model hash": model_hash, "Model": model_name}
    if sampling.schedule == "Automatic":  # A1111 leaves it out too
        del params["Schedule type"]
    if mode != "txt2img":
        params["Denoising strength"] = _number(sampling.strength)
    elif request.hires.enabled:  # A1111's keys and order; "Hires steps" only when not the first pass's count
        hires = request.hires
        params["Denoising strength"] = _number(hires.denoise)
        if hires.by_size:
            params["Hires resize"] = f"{hires.resize_width}x{hires.resize_height}"
        else:
            params["Hires upscale"] = _number(hires.scale)
        params["Hires steps"] = str(hires.steps) if hires.steps else ""
        params["Hires upscaler"] = hires.upscaler
    if request.conditioning.clip_skip > 1:  # A1111 writes it only when a layer is skipped
        params["Clip skip"] = str(request.conditioning.clip_skip)
    if request.conditioning.emphasis != "Original":  # A1111 writes it only when not its default
        params["Emphasis"] = request.conditioning.emphasis
    if mode in ("inpaint", "outpaint"):
        params["Mask blur"] = str(inpaint.mask_blur)
    if mode == "inpaint":
        params["Masked content"] = inpaint.masked_content.value
        params["Inpaint area"] = "Only masked" if inpaint.area.value == "only masked" else "Whole picture"
        if params["Inpaint area"] == "Only masked":
            params["Masked area padding"] = str(inpaint.padding)
    after_cfg = {key: value for key, value in extra if key in (DISTILLED_CFG_KEY, SHIFT_KEY)}
    if after_cfg:  # Forge's place for them: "CFG scale: 1, Distilled CFG Scale: 3.5, Seed: ..."
        at = list(params).index("CFG scale") + 1
        items = list(params.items())
        params = dict([*items[:at], *after_cfg.items(), *items[at:]])
    params.update(extra)
    params = {key: value for key, value in params.items() if value}  # no model name or hash: no entry
    conditioning = request.conditioning
    return Infotext(conditioning.prompt, conditioning.negative_prompt, params)


def read_flow_sampling(params: Mapping[str, str], sampling: Sampling, shift_written_when_set: bool = True) -> Sampling:
    """`sampling` with an infotext's "Distilled CFG Scale" and "Shift" (keys in any case) where they are numbers in
    range; a value left out or unusable keeps `sampling`'s. With `shift_written_when_set` (A1111, Forge and Sfumato
    text: "Shift" is written only when it is not the model's own), no "Shift" means 0, the model's own."""
    from .request import MAX_CFG, MAX_SHIFT

    lowered = {key.lower(): value for key, value in params.items()}
    changes: dict[str, float] = {}
    if shift_written_when_set and SHIFT_KEY.lower() not in lowered:
        changes["shift"] = 0.0
    for key, name, high in ((DISTILLED_CFG_KEY, "distilled_cfg", MAX_CFG), (SHIFT_KEY, "shift", MAX_SHIFT)):
        value = _read_number(lowered.get(key.lower()))
        if value is not None and 0 <= value <= high:
            changes[name] = value
    return sampling.replace(**changes)


def read_decoder(params: Mapping[str, str]) -> str:
    """The request's decoder an infotext's params (keys in any case) say: "tiny" for "Decoder: TAESD", else "full"
    (no "Decoder", or one Sfumato does not know: the model's own VAE)."""
    value = next((value for key, value in params.items() if key.lower() == DECODER_KEY.lower()), "")
    return "tiny" if str(value).strip().lower() == TAESD.lower() else "full"


def _read_number(text: object) -> float | None:
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


# -- writing


def _number(value: float) -> str:
    """7.0 -> "7", 6.25 -> "6.25": exact, without a needless ".0"."""
    return str(int(value)) if float(value).is_integer() else str(float(value))


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _join(prompt: str, negative: str, params: str) -> str:
    return "\n".join(part for part in (prompt, negative and f"{NEGATIVE_MARKER} {negative}", params) if part)


def _params_text(params: dict[str, str]) -> str:
    pieces = []
    for key, value in params.items():
        if not isinstance(key, str) or not _WRITABLE_KEY.fullmatch(key):
            raise InfotextError(f"cannot write the parameter name {key!r}")
        if not isinstance(value, str):
            raise InfotextError(f"the value of {key!r} must be text, not {type(value).__name__}")
        pieces.append(f"{key}: {_quoted_if_needed(value)}")
    if next(iter(params), None) == NEGATIVE_MARKER[:-1]:
        raise InfotextError("'Negative prompt' cannot be the first parameter: it would read as the negative prompt")
    return ", ".join(pieces)


def _quoted_if_needed(value: str) -> str:
    plain = value == value.strip() and not any(c in value for c in ",:\n\r") and value[:1] not in ('"', "[", "{")
    return value if plain else json.dumps(value, ensure_ascii=False)


# -- reading


def _json_string(text: str) -> str | None:
    try:
        decoded = json.loads(text, strict=False)
    except ValueError:
        return None
    return decoded if isinstance(decoded, str) else None


def _as_text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def from_fooocus_json(text: str) -> Infotext | None:
    """Fooocus's own scheme (one JSON object with text "prompt" / "negative_prompt"), or None for anything else."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not {"prompt", "negative_prompt"} & data.keys():
            return None
        if not all(isinstance(data.get(key) or "", str) for key in ("prompt", "negative_prompt")):
            return None  # not Fooocus's: its prompts are text
        params = {}
        for key, value in data.items():
            value = _as_text(value)
            size = _FOOOCUS_RESOLUTION.fullmatch(value) if key == "resolution" else None
            if size:
                params["Size"] = f"{size[1]}x{size[2]}"
            elif key not in ("prompt", "negative_prompt"):
                params[_FOOOCUS_NAMES.get(key, key)] = value
        return Infotext(_as_text(data.get("prompt")), _as_text(data.get("negative_prompt")), params)
    except (ValueError, RecursionError):
        return None


def _params_line(line: str) -> dict[str, str] | None:
    if line.lstrip().startswith(NEGATIVE_MARKER):
        return None
    scan = _PairScanner(line)
    count = len(scan.pairs)
    if not count or scan.pairs[0][0] == NEGATIVE_MARKER[:-1]:
        return None  # nothing, or a line that would read back as the negative prompt
    return dict(scan.pairs) if count >= 3 or not scan.stray else None


class _PairScanner:
    """Splits one line into (key, value) pairs and counts stray segments, in linear time.

    Bracket matching spends one budget per line, so unbalanced brackets cannot
    make it quadratic; once spent, values read as raw text.
    """

    def __init__(self, line: str):
        self.line, self.quotes, self.budget = line, _unescaped_quotes(line), 2 * len(line) + 256
        self.pairs: list[tuple[str, str]] = []
        self.stray = at = 0
        while at < len(line):
            key = _KEY.match(line, at)
            if key is None:
                end = _RAW.match(line, at).end()
                self.stray += bool(line[at:end].strip())
                at = end + 1
            else:
                value, at = self._value(key.end())
                self.pairs.append((key[1].strip(), value))

    def _value(self, start: int) -> tuple[str, int]:
        line, first = self.line, self.line[start : start + 1]
        close = self._next_quote(start) if first == '"' else self._balance(start) if first in ("[", "{") else -1
        after = _AFTER_VALUE.match(line, close + 1) if close >= 0 else None
        if after is not None:
            written = line[start : close + 1]
            value = _json_string(written) if first == '"' else written
            if value is not None:
                return value, after.end()
        end = _RAW.match(line, start).end()
        return line[start:end].strip(), end + 1

    def _next_quote(self, at: int) -> int:
        i = bisect.bisect_right(self.quotes, at)
        return self.quotes[i] if i < len(self.quotes) else -1

    def _balance(self, start: int) -> int:
        """Index of the bracket closing the one at start (skipping strings), or -1."""
        depth, at = 0, start
        while self.budget > 0 and (found := _BRACKET_OR_QUOTE.search(self.line, at)):
            hit = found.start()
            self.budget -= hit - at + 1
            at = hit + 1
            if self.line[hit] != '"':
                depth += 1 if self.line[hit] in "[{" else -1
                if depth == 0:
                    return hit
            elif self._next_quote(hit - 1) == hit:  # an unescaped quote opens a string: skip it
                at = self._next_quote(hit) + 1
                if at == 0:
                    return -1
                self.budget -= at - hit
        return -1


def _unescaped_quotes(line: str) -> list[int]:
    """Positions of '"' not preceded by an odd run of backslashes (the backslash runs are disjoint)."""
    found = []
    at = line.find('"')
    while at >= 0:
        run = 0
        while run < at and line[at - 1 - run] == "\\":
            run += 1
        if run % 2 == 0:
            found.append(at)
        at = line.find('"', at + 1)
    return found
