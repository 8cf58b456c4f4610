"""The X/Y/Z plot: one request with up to three of its fields varied, every combination made and drawn as a grid.

Axes and their values are typed as in AUTOMATIC1111's "X/Y/Z plot" script, so its users can type what they know:

    3,5,7              a list (CSV: "a, b" in double quotes keeps a comma inside one value)
    1-5                whole numbers 1, 2, 3, 4, 5 (the end counts)
    1-5 (+2)           with a step: 1, 3, 5; 10-1 (-3) is 10, 7, 4 (as A1111: a falling range stops before
                       end + 1, so 1 is not reached)
    1-10 [4]           4 values evenly spread from 1 to 10, truncated to whole numbers: 1, 4, 7, 10
    0.5-1.5 (+0.25)    decimal ranges for the decimal axes (CFG Scale, Denoising, LoRA weight); 1-2 [3] gives
                       1, 1.5, 2. Unlike A1111, a decimal range never passes its end: 0-0.4 (+0.2) is 0, 0.2,
                       0.4 (A1111's numpy range adds 0.6 when the steps do not add up exactly in binary, and
                       0-0.5 (+0.2) gives it 0.6 too); values are rounded to 8 decimals
    -1                 on the Seed axis, a random seed drawn when the plot starts (each -1 its own), as A1111

The plot runs as a Run (desktop/core/runs.py). Each cell is one generation of batch size 1 (A1111 makes the
batch in every cell; Sfumato makes one picture a cell so the grid shows one picture per combination). A -1 base
seed is drawn once, so every cell shares it (A1111's default; its "Keep -1 for seeds" is not offered); the
wildcards of a cell's prompt are chosen by its seed, as a lone picture's. Cells that
share a checkpoint run one after the other, so each model loads once; the grid keeps the axes' order.

Every cell is saved as its own picture (gallery, A1111 metadata) as soon as it is done, so a cancelled plot keeps
them; then the grid is saved in the "grids" subfolder of the output folder with A1111's "parameters" text (the
first cell's, with "Script: X/Y/Z plot, X Type: ..., X Values: ...") and the PLOT_KEY chunk that links every
cell to its file. With a Z axis, the grids of the Z values are stacked top to bottom in one picture, each under
its Z label (A1111 puts them side by side; stacked keeps every grid's column labels readable in wide plots).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import re
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import infotext, marking, runs
from .backend import Backend, GenerationJob, ModelDescriptor
from .errors import InvalidRequest, SfumatoError
from .infotext import InfotextError, parse_size
from .progress import TaskState
from .request import MAX_CFG, MAX_CLIP_SKIP, MAX_SEED, MAX_SIZE, MAX_STEPS, MIN_SIZE, RANDOM_SEED, \
    GenerationRequest, Mode
from .samplers import AUTOMATIC, SAMPLERS, SCHEDULES, split_sampler_name
from .wildcards import expand_request

SEED, STEPS, CFG, SAMPLER, SCHEDULE, DENOISING, SIZE, CHECKPOINT, PROMPT_SR, CLIP_SKIP, LORA_WEIGHT = (
    "Seed", "Steps", "CFG Scale", "Sampler", "Schedule type", "Denoising", "Size", "Checkpoint name", "Prompt S/R",
    "Clip skip", "LoRA weight")
AXIS_NAMES: tuple[str, ...] = (SEED, STEPS, CFG, SAMPLER, SCHEDULE, DENOISING, SIZE, CHECKPOINT, PROMPT_SR,
                               CLIP_SKIP, LORA_WEIGHT)

#: One line of help for each axis, for the dialog's tooltips and the CLI's --help.
AXIS_HELP: dict[str, str] = {
    SEED: "Seeds: 1,2,3 or 100-105; -1 draws a random seed for that value when the plot starts.",
    STEPS: "Sampling steps: 10,20,30 or 10-30 (+10) or 10-50 [5].",
    CFG: "CFG scale: 3,5,7 or 3-9 (+1.5).",
    SAMPLER: f"Sampler names: {', '.join(SAMPLERS)}; a schedule the sampler lacks becomes Automatic.",
    SCHEDULE: f"Schedule types: {', '.join(SCHEDULES)}.",
    DENOISING: "Denoising strength of image to image and inpaint (the hires fix's in text to image): 0.3-0.7 (+0.2).",
    SIZE: "Picture sizes as width x height: 512x512, 768x512.",
    CHECKPOINT: "Model names, as the model picker lists them.",
    PROMPT_SR: "Prompt search/replace: the first value is the text looked for in the prompts, each value replaces "
               "it (the first cell uses the prompt as it is); quote a value that holds a comma.",
    CLIP_SKIP: f"Clip skip: 1-{MAX_CLIP_SKIP}.",
    LORA_WEIGHT: "Weight of the first <lora:name:weight> tag in the prompt: 0.2-1 (+0.2).",
}

MAX_CELLS = 400  # pictures in one plot (A1111 has no cap, only a grid size in megapixels); 20x20 is plenty to compare
# The cells of a grid picture together, in pixels: above it they are drawn smaller, so the grid stays under Pillow's
# decompression-bomb warning (89 megapixels) that the gallery reads pictures with; the cells' own files keep theirs.
MAX_GRID_PIXELS = 64_000_000
PLOT_KEY = "sfumato_plot"  # the PNG text chunk of a grid picture: JSON of its axes and cell files
GRIDS_FOLDER = "grids"
SCRIPT = "X/Y/Z plot"

_INTS = {SEED: (RANDOM_SEED, MAX_SEED), STEPS: (1, MAX_STEPS), CLIP_SKIP: (1, MAX_CLIP_SKIP)}
_FLOATS = {CFG: (0.0, MAX_CFG), DENOISING: (0.0, 1.0), LORA_WEIGHT: (-100.0, 100.0)}
_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*(?:\d+\.?\d*|\.\d+)"
_RANGE = re.compile(rf"\s*({_INT})\s*-\s*({_INT})(?:\s*\(\s*([+-]?\d+)\s*\))?\s*")
_COUNT = re.compile(rf"\s*({_INT})\s*-\s*({_INT})\s*\[\s*(\d+)\s*\]\s*")
_RANGE_FLOAT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\))?\s*")
_COUNT_FLOAT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})\s*\[\s*(\d+)\s*\]\s*")
_LORA = re.compile(r"<lora:([^>]*)>", re.IGNORECASE)


class InvalidAxis(SfumatoError):
    """An axis whose values cannot make a plot; the sentence names the axis and what is wrong."""


@dataclass(frozen=True)
class Axis:
    name: str  # one of AXIS_NAMES
    text: str  # as typed ("1-5 (+2)"): what the grid's parameters record
    values: tuple  # typed: int, float, str, or (width, height) for Size


@dataclass(frozen=True)
class Cell:
    request: GenerationRequest  # the base with this cell's values, batch size 1, validated
    x: int
    y: int
    z: int


def parse_axis(name: str, text: str, choices: list[str] | tuple[str, ...] | None = None) -> Axis:
    """The axis `name` (any case) with the values of `text`; `choices` are the model names a "Checkpoint name"
    value must be one of (None: any). Raises InvalidAxis."""
    known = {axis.lower(): axis for axis in AXIS_NAMES}
    if not isinstance(name, str) or name.strip().lower() not in known:
        raise InvalidAxis(f"{name!r} is not an axis of the X/Y/Z plot; the axes are {', '.join(AXIS_NAMES)}.")
    name = known[name.strip().lower()]
    if not isinstance(text, str):
        raise InvalidAxis(f"The {name} axis needs its values as text, such as 3,5,7.")
    try:
        rows = csv.reader(io.StringIO(text.replace("\n", ",")), skipinitialspace=True)
        items = [item.strip() for row in rows for item in row]
    except csv.Error:
        raise InvalidAxis(f"The {name} axis's values are not a comma-separated list; check the quotes.") from None
    if name == PROMPT_SR:  # an empty value replaces the text with nothing: "with and without a term", as A1111
        items = items if any(items) else []
        if items and not items[0]:
            raise InvalidAxis("The Prompt S/R axis's first value is the text to look for in the prompt; it cannot be "
                              "empty.")
    else:
        items = [item for item in items if item]
    if not items:
        raise InvalidAxis(f"The {name} axis has no values; type them as in 3,5,7 or 1-5.")
    if name in _INTS:
        values = _ints(name, items)
    elif name in _FLOATS:
        values = _floats(name, items)
    else:
        values = [_choice(name, item, choices) for item in items]
    if len(values) > MAX_CELLS:
        raise InvalidAxis(_too_many(len(values)))
    return Axis(name, text, tuple(values))


def axis_labels(axis: Axis) -> list[str]:
    """The grid's label of each value: "Steps: 4", "CFG Scale: 7"; a sampler and a Prompt S/R text alone (A1111)."""
    labels = []
    for value in axis.values:
        if axis.name in (SAMPLER, PROMPT_SR):
            labels.append(str(value))
        elif axis.name == SIZE:
            labels.append(f"{axis.name}: {value[0]}x{value[1]}")
        elif axis.name == CHECKPOINT:
            labels.append(f"{axis.name}: {os.path.basename(str(value).rstrip('/')) or value}")
        elif isinstance(value, float):
            labels.append(f"{axis.name}: {_number(value)}")
        else:
            labels.append(f"{axis.name}: {value}")
    return labels


# -- parsing values


def _ints(name: str, items: list[str]) -> list[int]:
    values: list[int] = []
    for item in items:
        ranged, counted = _RANGE.fullmatch(item), _COUNT.fullmatch(item)
        if ranged:
            start, end = _int(ranged[1]), _int(ranged[2])
            step = _int(ranged[3]) if ranged[3] else 1
            if step == 0:
                raise InvalidAxis(f"The {name} axis's range {item!r} has a step of 0; use +1 or -1.")
            span = range(start, end + 1, step)  # A1111's rule, falling ranges included
            if len(span) > MAX_CELLS:
                raise InvalidAxis(_too_many(len(span)))
            if not span:
                raise InvalidAxis(f"The {name} axis's range {item!r} gives no values; for a falling range give a "
                                  "negative step, such as 10-1 (-3).")
            values += span
        elif counted:
            values += [int(v) for v in _spread(name, item, _int(counted[1]), _int(counted[2]), int(counted[3]))]
        else:
            try:
                values.append(int(item))
            except ValueError:
                raise InvalidAxis(f"The {name} axis's value {item!r} is not a whole number or a range such as "
                                  "1-5.") from None
    low, high = _INTS[name]
    for value in values:
        if not low <= value <= high:
            raise InvalidAxis(f"The {name} axis's value {value} is out of range; use {low} to {high}.")
    return values


def _floats(name: str, items: list[str]) -> list[float]:
    values: list[float] = []
    for item in items:
        ranged, counted = _RANGE_FLOAT.fullmatch(item), _COUNT_FLOAT.fullmatch(item)
        if ranged:
            start, end = _float(ranged[1]), _float(ranged[2])
            step = float(ranged[3]) if ranged[3] else 1.0
            if step == 0:
                raise InvalidAxis(f"The {name} axis's range {item!r} has a step of 0; use a step such as +0.5.")
            # start, start + step, ... up to the end, never past it (A1111's numpy arange can add one more)
            count = math.floor((end - start) / step + 1e-9) + 1
            if count > MAX_CELLS:
                raise InvalidAxis(_too_many(count))
            span = [start + n * step for n in range(count)]
            if not span:
                raise InvalidAxis(f"The {name} axis's range {item!r} gives no values; for a falling range give a "
                                  "negative step, such as 1-0 (-0.25).")
            values += span
        elif counted:
            values += _spread(name, item, _float(counted[1]), _float(counted[2]), int(counted[3]))
        else:
            try:
                values.append(float(item))
            except ValueError:
                raise InvalidAxis(f"The {name} axis's value {item!r} is not a number or a range such as "
                                  "0.5-1.5 (+0.25).") from None
    low, high = _FLOATS[name]
    for value in values:
        if not math.isfinite(value) or not low <= value <= high:
            raise InvalidAxis(f"The {name} axis's value {value:g} is out of range; use {low:g} to {high:g}.")
    return [round(value, 8) for value in values]  # 0.30000000000000004 -> 0.3, as A1111 labels it


def _spread(name: str, item: str, start: float, end: float, count: int) -> list[float]:
    if count < 1:
        raise InvalidAxis(f"The {name} axis's {item!r} asks for no values; put a count of 1 or more in [ ].")
    if count > MAX_CELLS:
        raise InvalidAxis(_too_many(count))
    return np.linspace(start, end, count).tolist()


def _int(text: str) -> int:
    return int(text.replace(" ", ""))


def _float(text: str) -> float:
    return float(text.replace(" ", ""))


def _choice(name: str, item: str, choices) -> object:
    if name == SAMPLER:
        try:
            sampler, schedule = split_sampler_name(item)
        except ValueError:
            raise InvalidAxis(f"The Sampler axis's value {item!r} is not a sampler; the samplers are "
                              f"{', '.join(SAMPLERS)}.") from None
        return sampler if schedule == AUTOMATIC else f"{sampler} {schedule}"
    if name == SCHEDULE:
        found = {schedule.lower(): schedule for schedule in SCHEDULES}.get(item.lower())
        if found is None:
            raise InvalidAxis(f"The Schedule type axis's value {item!r} is not a schedule type; they are "
                              f"{', '.join(SCHEDULES)}.")
        return found
    if name == SIZE:
        try:
            width, height = parse_size(item)
        except InfotextError:
            raise InvalidAxis(f"The Size axis's value {item!r} is not a size such as 512x768.") from None
        if not (MIN_SIZE <= width <= MAX_SIZE and MIN_SIZE <= height <= MAX_SIZE):
            raise InvalidAxis(f"The Size axis's value {item} is out of range; sides from {MIN_SIZE} to {MAX_SIZE} "
                              "pixels work.")
        return (width, height)
    if name == CHECKPOINT and choices is not None:
        found = {str(choice).lower(): str(choice) for choice in choices}.get(item.lower())
        if found is None:
            listed = ", ".join(map(str, list(choices)[:8])) + (", ..." if len(choices) > 8 else "")
            raise InvalidAxis(f"The Checkpoint name axis's value {item!r} is not one of the models ({listed}).")
        return found
    return item  # Prompt S/R text, or a model as named


def _too_many(count: int) -> str:
    return f"The X/Y/Z plot would make {count} pictures; at most {MAX_CELLS} fit in one plot: use fewer values."


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}" if abs(value) >= 1e-4 else repr(value)


# -- applying values


def _apply(request: GenerationRequest, axis: Axis, value) -> GenerationRequest:
    name, sampling, conditioning = axis.name, request.sampling, request.conditioning
    if name == SEED:
        return request.replace(sampling=sampling.replace(seed=value))
    if name == STEPS:
        return request.replace(sampling=sampling.replace(steps=value))
    if name == CFG:
        return request.replace(sampling=sampling.replace(cfg_scale=value))
    if name == SAMPLER:
        sampler, schedule = split_sampler_name(value, sampling.schedule)
        if schedule != AUTOMATIC and schedule not in SAMPLERS[sampler]:
            schedule = AUTOMATIC
        return request.replace(sampling=sampling.replace(sampler=sampler, schedule=schedule))
    if name == SCHEDULE:
        return request.replace(sampling=sampling.replace(schedule=value))
    if name == DENOISING:
        if request.mode is Mode.TXT2IMG:
            if not request.hires.enabled:
                raise InvalidAxis("The Denoising axis changes nothing in text to image without the hires fix; "
                                  "turn the hires fix on, or start from a picture.")
            return request.replace(hires=request.hires.replace(denoise=value))
        return request.replace(sampling=sampling.replace(strength=value))
    if name == SIZE:
        return request.replace(width=value[0], height=value[1])
    if name == CHECKPOINT:
        return request.replace(model=value)
    if name == CLIP_SKIP:
        return request.replace(conditioning=conditioning.replace(clip_skip=value))
    if name == PROMPT_SR:
        search = axis.values[0]
        if search not in conditioning.prompt and search not in conditioning.negative_prompt:
            raise InvalidAxis(f"Prompt S/R did not find {search!r} in the prompt or the negative prompt; its first "
                              "value is the text to look for.")
        return request.replace(conditioning=conditioning.replace(
            prompt=conditioning.prompt.replace(search, value),
            negative_prompt=conditioning.negative_prompt.replace(search, value)))
    if name == LORA_WEIGHT:
        found = _LORA.search(conditioning.prompt)
        if found is None:
            raise InvalidAxis("The LoRA weight axis needs a <lora:name:weight> tag in the prompt; it sets the weight "
                              "of the first one.")
        lora_name = found[1].split(":")[0].strip()
        tag = f"<lora:{lora_name}:{_number(value)}>"
        prompt = conditioning.prompt[:found.start()] + tag + conditioning.prompt[found.end():]
        return request.replace(conditioning=conditioning.replace(prompt=prompt))
    raise InvalidAxis(f"{name!r} is not an axis of the X/Y/Z plot.")


def _steps(request: GenerationRequest) -> int:
    """The steps the engine reports for one picture of `request` (as diffusers counts them, both passes)."""
    steps = request.sampling.steps
    if request.mode in (Mode.IMG2IMG, Mode.INPAINT):
        steps = max(1, min(int(steps * request.sampling.strength), steps))
    if request.mode is Mode.TXT2IMG and request.hires.enabled:
        steps += request.hires.steps or request.sampling.steps
    return steps


# -- the run


@dataclass(frozen=True)
class PlotRun:
    """A Run (desktop/core/runs.py) that makes every combination of its axes' values from `base`."""

    base: GenerationRequest
    x: Axis | None = None
    y: Axis | None = None
    z: Axis | None = None
    kind: ClassVar[str] = "plot"

    @property
    def axes(self) -> tuple[Axis | None, Axis | None, Axis | None]:
        return (self.x, self.y, self.z)

    def pictures(self) -> int:
        return math.prod(len(axis.values) for axis in self.axes if axis is not None)

    def cells(self) -> list[Cell]:
        """Every cell in the grid's order (x fastest, then y, then z), validated. Raises InvalidAxis."""
        if all(axis is None for axis in self.axes):
            raise InvalidAxis("The X/Y/Z plot has no axis; pick at least one and type its values.")
        if self.pictures() > MAX_CELLS:
            raise InvalidAxis(_too_many(self.pictures()))
        base = self.base.replace(sampling=self.base.sampling.replace(batch_size=1))
        counts = [len(axis.values) if axis is not None else 1 for axis in self.axes]
        cells = []
        for k in range(counts[2]):
            for j in range(counts[1]):
                for i in range(counts[0]):
                    request = base
                    for axis, index in zip(self.axes, (i, j, k), strict=True):
                        if axis is not None:
                            request = _apply(request, axis, axis.values[index])
                    try:
                        request.validate()
                    except InvalidRequest as error:
                        raise InvalidAxis(f"The cell {self._where(i, j, k)} cannot be made: {str(error).rstrip('.')}.") from None
                    cells.append(Cell(request, i, j, k))
        return cells

    def _where(self, i: int, j: int, k: int) -> str:
        return ", ".join(axis_labels(axis)[index] for axis, index in zip(self.axes, (i, j, k), strict=True)
                         if axis is not None)

    def total_steps(self) -> int:
        return sum(_steps(cell.request) for cell in self.cells())

    def describe(self) -> str:
        names = " × ".join(axis.name for axis in self.axes if axis is not None) or "no axis"
        count = self.pictures()
        return f"X/Y/Z plot: {names}, {count} picture{'s' if count != 1 else ''}"

    def fixed(self) -> PlotRun:
        """This plot with its random seeds drawn: a -1 base seed once for every cell, each -1 of a Seed axis."""
        base = self.base
        if base.sampling.seed == RANDOM_SEED:
            base = base.replace(sampling=base.sampling.replace(seed=random.randint(0, MAX_SEED)))
        axes = [axis if axis is None or axis.name != SEED else dataclasses.replace(
            axis, values=tuple(random.randint(0, MAX_SEED) if v == RANDOM_SEED else v for v in axis.values))
            for axis in self.axes]
        return PlotRun(base, *axes)

    def run(self, backend: Backend, state: TaskState, context: runs.RunContext) -> runs.RunOutcome:
        began = time.perf_counter()
        plot = self.fixed()
        cells = plot.cells()
        total = sum(_steps(cell.request) for cell in cells)
        first_of = {}
        for cell in cells:
            first_of.setdefault(cell.request.model, len(first_of))
        order = sorted(range(len(cells)), key=lambda index: first_of[cells[index].request.model])
        preview = getattr(context.settings, "preview_method", "approximate"), \
            getattr(context.settings, "preview_every", 1)
        done, loaded, models = 0, None, {}
        shown: dict[int, runs.Shown] = {}
        results_of: dict[int, tuple] = {}
        for count, index in enumerate(order, 1):
            cell = cells[index]
            request = expand_request(cell.request.resolved(), context.settings.models_folders)  # its wildcards
            if loaded is None or loaded.ref != request.model:
                loaded = backend.load(request.model, runs.part(state, done, total))
                models[request.model] = loaded
            state.status(f"X/Y/Z plot: picture {count} of {len(cells)} ({plot._where(cell.x, cell.y, cell.z)})")
            results = backend.run(GenerationJob(request, *preview), runs.part(state, done, total))[:1]
            shown[index] = context.save(results, loaded)[0]
            results_of[index] = (request, results[0].params, loaded)
            done += _steps(request)
        grid = plot._grid([shown[index][0] for index in range(len(cells))])
        folder = context.settings.output_path() / GRIDS_FOLDER
        first_request, params, first_model = results_of[0]
        chunk = plot._plot_chunk(cells, [shown[index] for index in range(len(cells))], folder)
        path = context.add_picture(f"{GRIDS_FOLDER}/xyz_grid-{first_request.sampling.seed}.png", grid,
                                   plot._parameters(first_request, params, first_model),
                                   {PLOT_KEY: chunk, **marking.chunks(first_request, context.settings.mark_ai)})
        seconds = time.perf_counter() - began
        return runs.RunOutcome([(grid, -1, path), *(shown[index] for index in range(len(cells)))],
                               f"Plot done in {seconds:.0f} s: {len(cells)} pictures and the grid saved to "
                               f"{context.settings.output_path()}")

    def _labels(self) -> list[list[str]]:
        return [axis_labels(axis) if axis is not None else [] for axis in self.axes]

    def _grid(self, images: list[np.ndarray]) -> np.ndarray:
        x_labels, y_labels, z_labels = self._labels()
        area = sum(image.shape[0] * image.shape[1] for image in images)
        if area > MAX_GRID_PIXELS:  # smaller cells, so that the gallery (and any viewer) can open the grid
            scale = math.sqrt(MAX_GRID_PIXELS / area)
            images = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).resize(
                (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))), Image.LANCZOS))
                for image in images]
        per_grid = max(1, len(x_labels)) * max(1, len(y_labels))
        grids = [draw_grid(images[k * per_grid:(k + 1) * per_grid], x_labels, y_labels,
                           z_labels[k] if z_labels else None)
                 for k in range(max(1, len(z_labels)))]
        return grids[0] if len(grids) == 1 else _stack(grids)

    def _plot_chunk(self, cells: list[Cell], shown: list, folder) -> str:
        labels = self._labels()
        axes = {key: None if axis is None else {"name": axis.name, "labels": names}
                for key, axis, names in zip("xyz", self.axes, labels, strict=True)}
        files = [{"file": os.path.relpath(path, folder).replace(os.sep, "/"), "x": cell.x, "y": cell.y,
                  "z": cell.z, "seed": seed} for cell, (_, seed, path) in zip(cells, shown, strict=True)]
        return json.dumps({**axes, "cells": files}, ensure_ascii=False)

    def _parameters(self, request: GenerationRequest, params, model: ModelDescriptor) -> str:
        """A1111's grid infotext: the first cell's, with the script and its axes as typed."""
        info = infotext.from_request(request, request.sampling.seed, model.name, model.hash, params)
        extra = {"Script": SCRIPT}
        for key, axis in zip("XYZ", self.axes, strict=True):
            if axis is not None:
                extra[f"{key} Type"] = axis.name
                extra[f"{key} Values"] = axis.text.strip()
                if axis.name == SEED:
                    extra[f"Fixed {key} Values"] = ", ".join(map(str, axis.values))
        return infotext.format_infotext(dataclasses.replace(info, params={**info.params, **extra}))

    def encode(self) -> dict:
        from .remote_protocol import encode_job

        return {"kind": self.kind, "base": json.loads(encode_job(GenerationJob(self.base))),
                "axes": [None if axis is None else {"name": axis.name, "text": axis.text,
                                                    "values": [list(v) if isinstance(v, tuple) else v
                                                               for v in axis.values]}
                         for axis in self.axes]}


def decode(data: dict) -> PlotRun:
    """The PlotRun of `PlotRun.encode()`; SfumatoError with a sentence for a damaged one."""
    from .remote_protocol import decode_job

    try:
        base = decode_job(data["base"], lambda ref, kind: ref).request
        axes = []
        for item in data["axes"]:
            if item is None:
                axes.append(None)
                continue
            if item["name"] == CHECKPOINT:  # the text may hold the picker's labels: the stored values are the models
                axes.append(_checkpoint_axis(item["text"], item["values"]))
            else:
                axes.append(parse_axis(item["name"], item["text"]))
        return PlotRun(base, *axes)
    except (KeyError, TypeError, ValueError) as error:
        raise SfumatoError(f"A queued X/Y/Z plot could not be read back ({error}); make it again.") from None


def _checkpoint_axis(text, values) -> Axis:
    if not isinstance(text, str) or not isinstance(values, list) or not 0 < len(values) <= MAX_CELLS \
            or not all(isinstance(value, str) and value for value in values):
        raise ValueError("its Checkpoint name axis is not a list of model names")
    return Axis(CHECKPOINT, text, tuple(values))


runs.register(PlotRun.kind, decode)


# -- drawing


def draw_grid(images: list[np.ndarray], x_labels: list[str], y_labels: list[str], title: str | None = None
              ) -> np.ndarray:
    """The cells (row after row, `len(x_labels)` a row) on white, the column labels on top, the row labels on the
    left, and `title` above all: HxWx3 uint8. Cells of different sizes are centred in the largest one's space."""
    columns = max(1, len(x_labels))
    rows = max(1, math.ceil(len(images) / columns))
    cell_w = max(image.shape[1] for image in images)
    cell_h = max(image.shape[0] for image in images)
    size = max(12, (cell_w + cell_h) // 25)  # A1111's size for big cells, legible for small ones
    font = ImageFont.load_default(size=size)
    pad = size // 2
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line = size + size // 4
    top_lines = [_wrap(measure, text, font, cell_w - pad) for text in x_labels]
    # the row labels' band: wide enough for their longest word, within 3/4 and 3/2 of a cell (12 characters' room)
    widest = max((measure.textlength(word, font=font) for text in y_labels for word in str(text).split()), default=0)
    left_w = int(min(max(widest + 2 * pad, cell_w * 3 // 4), max(cell_w * 3 // 2, 6 * size))) if y_labels else 0
    left_lines = [_wrap(measure, text, font, left_w - 2 * pad) for text in y_labels]
    top_h = (max(len(lines) for lines in top_lines) * line + 2 * pad) if any(x_labels) else 0
    title_font = ImageFont.load_default(size=size * 5 // 4)
    title_lines = _wrap(measure, title, title_font, left_w + columns * cell_w - 2 * pad) if title else []
    title_h = len(title_lines) * (size * 5 // 4 + size // 4) + 2 * pad if title else 0
    width, height = left_w + columns * cell_w, title_h + top_h + rows * cell_h
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for n, text in enumerate(title_lines):
        draw.text((width // 2, pad + n * (size * 5 // 4 + size // 4)), text, fill="black", font=title_font,
                  anchor="ma")
    for i, lines in enumerate(top_lines):
        y0 = title_h + top_h - pad - len(lines) * line
        for n, text in enumerate(lines):
            draw.text((left_w + i * cell_w + cell_w // 2, y0 + n * line), text, fill="black", font=font, anchor="ma")
    for j, lines in enumerate(left_lines[:rows]):
        y0 = title_h + top_h + j * cell_h + (cell_h - len(lines) * line) // 2
        for n, text in enumerate(lines):
            draw.text((left_w - pad, y0 + n * line), text, fill="black", font=font, anchor="ra")
    for index, image in enumerate(images):
        picture = Image.fromarray(np.ascontiguousarray(image[..., :3]))
        i, j = index % columns, index // columns
        canvas.paste(picture, (left_w + i * cell_w + (cell_w - picture.width) // 2,
                               title_h + top_h + j * cell_h + (cell_h - picture.height) // 2))
    return np.asarray(canvas).copy()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels, broken between words (inside a word too long for a line)."""
    width = max(width, 1)
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        current = ""
        for word in paragraph.split(" "):
            trial = f"{current} {word}" if current else word
            if draw.textlength(trial, font=font) <= width:
                current = trial
                continue
            if current:
                lines.append(current)
            current = ""
            for char in word:
                if current and draw.textlength(current + char, font=font) > width:
                    lines.append(current)
                    current = ""
                current += char
        lines.append(current)
    return lines or [""]


def _stack(grids: list[np.ndarray]) -> np.ndarray:
    """The grids one under the other on white, with a gap, left-aligned."""
    gap = max(8, grids[0].shape[0] // 40)
    width = max(grid.shape[1] for grid in grids)
    height = sum(grid.shape[0] for grid in grids) + gap * (len(grids) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    y = 0
    for grid in grids:
        out[y:y + grid.shape[0], :grid.shape[1]] = grid
        y += grid.shape[0] + gap
    return out
