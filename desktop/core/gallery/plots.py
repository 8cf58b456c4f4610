"""An X/Y/Z plot's grid picture, read back: its axes and where each cell's own picture is.

The grid picture carries a `sfumato_plot` PNG text chunk (desktop/core/xyz.py writes it): JSON with each axis's
name and labels and, per cell, its file (relative to the grid's folder), its place on the axes and its seed. The
gallery opens such a picture as a grid whose cells link to their pictures. Reading never raises: a chunk that is
not a plot gives None (so does one with more places on its axes than a plot makes pictures), a cell that says nothing usable is left out, a cell file that is gone is marked missing,
and a file outside the gallery's folder is treated as missing (a picture from elsewhere can point anywhere).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .. import imageio
from ..xyz import MAX_CELLS, PLOT_KEY

MAX_TEXT = 4 * 2**20  # the chunk's length read at most
MAX_LABELS = MAX_CELLS  # per axis
# places on the axes (columns x rows x Z values), and cells read: a plot makes at most MAX_CELLS pictures, so a
# chunk with more is not one of ours (a crafted one would make the grid view draw a million cells)
MAX_PLOT_CELLS = MAX_CELLS


@dataclass(frozen=True)
class PlotAxis:
    name: str  # "" when the plot has no such axis
    labels: tuple[str, ...]  # one "" when the plot has no such axis


@dataclass(frozen=True)
class PlotCell:
    path: Path
    x: int  # indices into the axes' labels
    y: int
    z: int
    seed: int | None
    present: bool  # the file is there, inside the gallery's folder
    inside: bool = True  # the file's place is inside the gallery's folder (else it is never opened)


@dataclass(frozen=True)
class Plot:
    x: PlotAxis
    y: PlotAxis
    z: PlotAxis
    cells: tuple[PlotCell, ...]

    def cell(self, x: int, y: int, z: int) -> PlotCell | None:
        return self._places.get((x, y, z))

    @cached_property
    def _places(self) -> dict[tuple[int, int, int], PlotCell]:
        places: dict[tuple[int, int, int], PlotCell] = {}
        for c in self.cells:
            places.setdefault((c.x, c.y, c.z), c)  # the first cell said for a place, as before
        return places

    def missing(self) -> int:
        return sum(not c.present for c in self.cells)


NO_AXIS = PlotAxis("", ("",))


def read_plot(path: str | Path, root: str | Path | None = None) -> Plot | None:
    """The plot a grid picture file describes, None when it is not one (or cannot be read). Cell files outside
    `root` (the gallery's folder; the grid's own folder when None) count as missing."""
    try:
        with imageio.open_picture(path) as image:
            if image.format != "PNG":
                return None
            text = image.info.get(PLOT_KEY)
            if not isinstance(text, str):
                image.load()  # text chunks after the pixels are only read with them
                text = getattr(image, "text", {}).get(PLOT_KEY)
    except (OSError, ValueError, SyntaxError):
        return None
    if not isinstance(text, str):
        return None
    return parse_plot(text, Path(path).parent, Path(root) if root is not None else Path(path).parent)


def parse_plot(text: str, folder: Path, root: Path) -> Plot | None:
    """The plot in a chunk's JSON, its cell files relative to `folder`; None when it is not a plot."""
    if len(text) > MAX_TEXT:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        return None
    x, y, z = (_axis(data.get(key)) for key in ("x", "y", "z"))
    if None in (x, y, z) or (x is NO_AXIS and y is NO_AXIS and z is NO_AXIS):
        return None
    if len(x.labels) * len(y.labels) * len(z.labels) > MAX_PLOT_CELLS:  # more places than a plot has pictures
        return None
    root = _resolved(root)
    cells = []
    for item in data["cells"][:MAX_PLOT_CELLS]:
        cell = _cell(item, (x, y, z), folder, root)
        if cell is not None:
            cells.append(cell)
    return Plot(x, y, z, tuple(cells))


def _axis(value: object) -> PlotAxis | None:
    if not isinstance(value, dict):
        return NO_AXIS
    labels = value.get("labels")
    if not isinstance(labels, list) or not labels:
        return NO_AXIS
    name = value.get("name")
    if len(labels) > MAX_LABELS:
        return None  # more values than a plot can have
    return PlotAxis(name if isinstance(name, str) else "", tuple(str(label) for label in labels))


def _cell(item: object, axes: tuple[PlotAxis, ...], folder: Path, root: Path | None) -> PlotCell | None:
    if not isinstance(item, dict) or not isinstance(item.get("file"), str) or not item["file"] \
            or "\0" in item["file"]:  # no file has such a name
        return None
    place = []
    for key, axis in zip(("x", "y", "z"), axes):
        index = _index(item.get(key, 0), axis)
        if index is None:
            return None
        place.append(index)
    seed = item.get("seed")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
    try:
        path = folder / item["file"]
        resolved = _resolved(path)
        inside = root is not None and resolved is not None and resolved.is_relative_to(root)
        present = inside and resolved.is_file()
    except (OSError, ValueError):  # a NUL or an over-long name in the chunk
        return None
    return PlotCell(path, *place, seed=seed, present=present, inside=inside)


def _index(value: object, axis: PlotAxis) -> int | None:
    """A cell's place on an axis: the index of its label (an int), or the label itself."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < len(axis.labels) else None
    if isinstance(value, (str, float)) and str(value) in axis.labels:
        return axis.labels.index(str(value))
    return None


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return None
