"""Wildcards and dynamic prompts, as A1111's sd-dynamic-prompts extension and ComfyUI's wildcard nodes read them.

- ``__colors__`` is one line of ``colors.txt`` from a wildcards folder (`wildcard_folders`); ``__clothes/hats__``
  is ``clothes/hats.txt``. Empty lines and lines starting with ``#`` are skipped. A line may itself hold
  wildcards and variants, nested up to MAX_NESTING deep.
- ``{red|green|blue}`` is one of the three; ``{2::red|blue}`` weighs red twice; ``{2$$red|green|blue}`` is two
  different ones joined by ", ", ``{2$$ and $$red|green|blue}`` joined by " and "; ``{1-3$$...}`` one to three,
  ``{2-$$...}`` two or more, ``{-2$$...}`` one or two. Options are used as written (spaces included).
- ``\\{`` and ``\\}`` are a literal brace, ``\\|`` in a variant a literal bar (the backslash goes). Every other
  backslash stays, and so does A1111's own syntax: ``(word:1.2)``, ``[a:b:0.5]``, ``[a|b]``, ``<lora:name:0.7>``;
  a ``|`` inside ``[...]`` within a variant belongs to that alternation, not to the variant.
- The choices are drawn from ``random.Random(seed)`` (the negative prompt from its own stream of the same seed):
  the same seed gives the same prompt on any computer.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable
from pathlib import Path

from . import paths
from .app_folders import A1111, app_models_folder
from .errors import SfumatoError
from .request import GenerationRequest

MAX_NESTING = 20  # wildcards within wildcards, braces within braces
MAX_NAMES = 5000  # wildcard names listed for the prompt's completion

_NAME = r"\w[\w\-./]*?"
_WILDCARD = re.compile(rf"__({_NAME})__")
_COUNT = re.compile(r"\s*(\d*)\s*(-?)\s*(\d*)\s*\$\$")
_SEPARATOR = re.compile(r"([^|{}]*?)\$\$")
_WEIGHT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*::")
_NEGATIVE_STREAM = 1 << 32  # seeds are 32-bit, so the negative prompt's stream is never another picture's


class WildcardError(SfumatoError):
    """A prompt's wildcards or variants cannot be expanded; the sentence says why and what to do."""


def wildcard_folders(models_folders: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Where ``__name__`` is looked for, in this order: Sfumato's own wildcards folder, then a ``wildcards``
    folder in each models folder; for a checkpoint folder of A1111 or ComfyUI (desktop/core/app_folders.py) also
    that install's own (A1111: extensions/sd-dynamic-prompts/wildcards; ComfyUI: wildcards)."""
    found: list[Path] = [paths.wildcards_dir()]
    for folder in models_folders:
        folder = Path(folder).expanduser()
        found.append(folder / "wildcards")
        app = app_models_folder(folder)
        if app is not None:
            kind, models = app
            install = models.parent
            found.append(install / "extensions" / "sd-dynamic-prompts" / "wildcards" if kind == A1111
                         else install / "wildcards")
    unique: dict[str, Path] = {}
    for folder in found:
        unique.setdefault(paths.path_key(folder), folder)
    return list(unique.values())


def wildcard_names(folders: Iterable[Path]) -> list[str]:
    """The ``name`` of every ``__name__`` the folders offer (sub-folders as ``clothes/hats``), sorted."""
    names: set[str] = set()
    for folder in folders:
        try:
            for path in folder.rglob("*.txt"):
                names.add(path.relative_to(folder).with_suffix("").as_posix())
                if len(names) >= MAX_NAMES:
                    return sorted(names)
        except OSError:  # a folder that vanished or cannot be read offers nothing
            continue
    return sorted(names)


def uses_syntax(text: str) -> bool:
    """Whether `text` may hold a wildcard or a variant (a quick test; expand says what is wrong)."""
    return "{" in text or "}" in text or "__" in text


def expand(text: str, seed: int, folders: Iterable[Path], *, negative: bool = False) -> str:
    """`text` with its wildcards and variants replaced by the choices `seed` makes. Raises WildcardError."""
    if not uses_syntax(text):
        return text
    rng = random.Random(seed + _NEGATIVE_STREAM if negative else seed)
    return _Expander(list(folders), rng, "negative prompt" if negative else "prompt").text(text, (), in_variant=False)


def expand_request(request: GenerationRequest, models_folders: Iterable[str | os.PathLike]) -> GenerationRequest:
    """The resolved `request` with both prompts expanded by its seed (a batch's first: see expand_batch), so that
    what runs, and what the infotext records, is what the model saw. Raises WildcardError."""
    conditioning = request.conditioning
    if not (uses_syntax(conditioning.prompt) or uses_syntax(conditioning.negative_prompt)):
        return request
    folders = wildcard_folders(models_folders)
    seed = request.sampling.seed
    return request.replace(conditioning=conditioning.replace(
        prompt=expand(conditioning.prompt, seed, folders),
        negative_prompt=expand(conditioning.negative_prompt, seed, folders, negative=True)))


def expand_batch(request: GenerationRequest, models_folders: Iterable[str | os.PathLike]) -> list[GenerationRequest]:
    """What runs for the resolved `request`: itself expanded by its seed when every seed of its batch chooses the
    same prompts (always so without wildcards or variants); else one request of batch size 1 per seed, in the
    batch's order, each with the prompts its seed chose, so that a seed makes the same picture in a batch as alone,
    in a plot or in a folder batch. Raises WildcardError."""
    conditioning = request.conditioning
    if not (uses_syntax(conditioning.prompt) or uses_syntax(conditioning.negative_prompt)):
        return [request]
    folders = wildcard_folders(models_folders)
    seeds = request.sampling.seeds
    prompts = [(expand(conditioning.prompt, seed, folders), expand(conditioning.negative_prompt, seed, folders,
                                                                   negative=True)) for seed in seeds]
    if len(set(prompts)) == 1:
        return [request.replace(conditioning=conditioning.replace(prompt=prompts[0][0],
                                                                  negative_prompt=prompts[0][1]))]
    return [request.replace(sampling=request.sampling.replace(seed=seed, batch_size=1),
                            conditioning=conditioning.replace(prompt=prompt, negative_prompt=negative))
            for seed, (prompt, negative) in zip(seeds, prompts, strict=True)]


class _Expander:
    def __init__(self, folders: list[Path], rng: random.Random, where: str):
        self.folders, self.rng, self.where = folders, rng, where
        self.files: dict[str, list[str]] = {}

    def text(self, text: str, chain: tuple[str, ...], *, in_variant: bool) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            char = text[i]
            if char == "\\" and i + 1 < n:
                following = text[i + 1]
                out.append(following if following in "{}" or (in_variant and following == "|") else text[i:i + 2])
                i += 2
            elif char == "{":
                end = _closing(text, i)
                if end is None:
                    raise WildcardError(f"The {self.where} has a {{ with no }} to close it (at “{_near(text, i)}”): "
                                        "close it, or write \\{ for a brace.")
                if len(chain) >= MAX_NESTING:
                    raise _too_deep(chain)
                out.append(self.variant(text[i + 1:end], (*chain, "{")))
                i = end + 1
            elif char == "}":
                raise WildcardError(f"The {self.where} has a }} that no {{ opens (at “{_near(text, i)}”): "
                                    "remove it, or write \\} for a brace.")
            elif text.startswith("__", i) and (found := _WILDCARD.match(text, i)):
                out.append(self.wildcard(found.group(1), chain))
                i = found.end()
            else:
                out.append(char)
                i += 1
        return "".join(out)

    def variant(self, body: str, chain: tuple[str, ...]) -> str:
        low = high = 1
        separator = ", "
        count = _COUNT.match(body)
        if count and (count.group(1) or count.group(3)):
            first, dash, last = count.groups()
            if dash:
                low, high = int(first or 1), int(last) if last else None
            else:
                low = high = int(first)
            body = body[count.end():]
            if named := _SEPARATOR.match(body):
                separator, body = named.group(1), body[named.end():]
        options: list[tuple[float, str]] = []
        for option in _split(body):
            weight = _WEIGHT.match(option)
            options.append((float(weight.group(1)), option[weight.end():]) if weight else (1.0, option))
        options = [(w, o) for w, o in options if w > 0]
        high = len(options) if high is None else min(high, len(options))
        low = min(low, high)
        how_many = low if low == high else self.rng.randint(low, high)
        chosen: list[str] = []
        for _ in range(how_many):
            index = _pick(self.rng, [w for w, _ in options])
            chosen.append(options.pop(index)[1])
        return separator.join(self.text(option, chain, in_variant=True) for option in chosen)

    def wildcard(self, name: str, chain: tuple[str, ...]) -> str:
        if len(chain) >= MAX_NESTING:
            raise _too_deep((*chain, f"__{name}__"))
        lines = self.lines(name)
        return self.text(lines[self.rng.randrange(len(lines))], (*chain, f"__{name}__"), in_variant=False)

    def lines(self, name: str) -> list[str]:
        if name in self.files:
            return self.files[name]
        path = _find(name, self.folders)
        if path is None:
            raise WildcardError(f"There is no wildcard file for __{name}__: put a {name}.txt (one choice a line) "
                                f"in {_listed(self.folders)}.")
        try:
            text = path.read_text(encoding="utf-8-sig", errors="replace")
        except OSError as error:
            raise WildcardError(f"The wildcard file {path} could not be read ({error.strerror or error}): "
                                "check that it is a readable text file.") from None
        lines = [line.strip() for line in text.splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        if not lines:
            raise WildcardError(f"The wildcard file {path} has no lines to choose from (empty lines and lines "
                                "starting with # are skipped): add one choice a line.")
        self.files[name] = lines
        return lines


def _find(name: str, folders: list[Path]) -> Path | None:
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    for folder in folders:
        path = folder.joinpath(*parts[:-1], parts[-1] + ".txt")
        try:
            if path.is_file():
                return path
        except OSError:
            continue
    return None


def _pick(rng: random.Random, weights: list[float]) -> int:
    """An index drawn with the given weights (all > 0) from one rng.random()."""
    point = rng.random() * sum(weights)
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return index
    return len(weights) - 1


def _closing(text: str, start: int) -> int | None:
    """The index of the } that closes the { at `start`, or None."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _split(body: str) -> list[str]:
    """A variant's options: split at each | that is not escaped nor inside {...} or [...]."""
    options, begin, braces, squares, i = [], 0, 0, 0, 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            braces += 1
        elif char == "}":
            braces -= 1
        elif char == "[":
            squares += 1
        elif char == "]":
            squares = max(0, squares - 1)
        elif char == "|" and braces == 0 and squares == 0:
            options.append(body[begin:i])
            begin = i + 1
        i += 1
    options.append(body[begin:])
    return options


def _near(text: str, i: int) -> str:
    return text[max(0, i - 12):i + 12].strip()


def _listed(folders: list[Path]) -> str:
    return str(folders[0]) if len(folders) == 1 else ", ".join(map(str, folders[:-1])) + f" or {folders[-1]}"


def _too_deep(chain: tuple[str, ...]) -> WildcardError:
    names = [link for link in chain if link.startswith("__")]
    through = " → ".join(names[:4]) + (" → …" if len(names) > 4 else "")
    if not names:
        return WildcardError(f"The prompt's variants nest more than {MAX_NESTING} deep: take some braces out.")
    return WildcardError(f"The prompt's wildcards and variants nest more than {MAX_NESTING} deep (through {through}): "
                         "a wildcard file probably names itself; take that line out.")
