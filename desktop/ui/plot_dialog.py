"""Generate > X/Y/Z plot...: up to three axes over the panel's current request, typed as AUTOMATIC1111 types them.

Each axis is a field of the request (desktop/core/xyz.py's AXIS_NAMES) and its values ("3,5,7", "1-5 (+2)",
"1-10 [4]"). A line under them counts the pictures the plot will make and estimates its time from the speed the
window measured on its last job; a value that cannot make a plot is said in one red sentence and OK waits for it.
OK gives the PlotRun (`plot()`), which the window queues like any job. The base is what Generate would send:
the panel's values and, for image to image or inpaint, the canvas frame's pictures.

Checkpoint names are the model picker's labels (on a server, the server's models); the plot is given their
references, so a typed name loads the model the picker would.
"""

from __future__ import annotations

import csv
import io

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QGridLayout, QLabel, QLineEdit, QToolButton,
                               QVBoxLayout, QWidget)

from desktop.core.request import GenerationRequest
from desktop.core.samplers import SAMPLERS, SCHEDULES
from desktop.core.xyz import (AXIS_HELP, AXIS_NAMES, CFG, CHECKPOINT, CLIP_SKIP, DENOISING, LORA_WEIGHT, PROMPT_SR,
                              SAMPLER, SCHEDULE, SEED, SIZE, STEPS, Axis, InvalidAxis, PlotRun, parse_axis)

from .theme import is_dark

NOTHING = "Nothing"
KEYS = ("X", "Y", "Z")
EXAMPLES = {
    SEED: "1,2,3 or 100-105", STEPS: "10,20,30 or 10-30 (+10)", CFG: "3,5,7 or 3-9 (+1.5)",
    SAMPLER: "Euler a, DPM++ 2M", SCHEDULE: "Karras, Exponential", DENOISING: "0.3-0.7 (+0.2)",
    SIZE: "512x512, 768x512", CHECKPOINT: "model names (… lists them)", PROMPT_SR: "dog, cat, fox",
    CLIP_SKIP: "1,2", LORA_WEIGHT: "0.2-1 (+0.2)",
}
SYNTAX = ("Values as in AUTOMATIC1111: a list 3,5,7 · a range 1-5 · with a step 1-5 (+2) · a count 1-10 [4] · "
          "\"quotes\" keep a comma inside a value.")
UNKNOWN_TIME = "time unknown until a picture has been made"


def about(seconds: float) -> str:
    """ "about 41 s", "about 3 min", "about 1 h 20 min"."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"about {minutes} min" if minutes < 120 else f"about {minutes // 60} h {minutes % 60} min"


class AxisRow:
    """One axis: its type and its values, and a button that fills in every choice of a type that has a list."""

    def __init__(self, key: str, dialog: PlotDialog, grid: QGridLayout, row: int, choices: dict[str, list[str]]):
        self.key, self.choices = key, choices
        self.label = QLabel(f"{key} axis")
        self.type = QComboBox()
        self.type.addItems([NOTHING, *AXIS_NAMES])
        self.type.setToolTip(f"What the {key} axis changes")
        self.values = QLineEdit()
        self.values.setClearButtonEnabled(True)
        self.fill = QToolButton(text="…")
        self.fill.setToolTip("Put every choice in the values")
        self.fill.clicked.connect(self.fill_all)
        for column, widget in enumerate((self.label, self.type, self.values, self.fill)):
            grid.addWidget(widget, row, column)
        self.label.setBuddy(self.type)
        self.type.currentTextChanged.connect(self._type_changed)
        self.type.currentTextChanged.connect(dialog.update_count)
        self.values.textChanged.connect(dialog.update_count)
        self._type_changed(self.type.currentText())

    def name(self) -> str | None:
        text = self.type.currentText()
        return None if text == NOTHING else text

    def _type_changed(self, name: str) -> None:
        used = name != NOTHING
        self.values.setEnabled(used)
        self.values.setPlaceholderText(f"e.g. {EXAMPLES[name]}" if used else "")
        self.values.setToolTip(AXIS_HELP.get(name, "Choose what this axis changes"))
        self.fill.setVisible(name in self.choices)

    def fill_all(self) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(self.choices.get(self.type.currentText(), []))
        self.values.setText(buffer.getvalue().replace(",", ", "))

    def axis(self, models: dict[str, str]) -> Axis | None:
        """The axis typed, None when unused (no type or no values); raises InvalidAxis."""
        name = self.name()
        if name is None or not self.values.text().strip():
            return None
        if name != CHECKPOINT:
            return parse_axis(name, self.values.text())
        axis = parse_axis(name, self.values.text(), list(models))
        return Axis(axis.name, axis.text, tuple(models[value] for value in axis.values))


class PlotDialog(QDialog):
    def __init__(self, base: GenerationRequest, models: list[tuple[str, str]], seconds_per_step: float | None,
                 parent: QWidget | None = None):
        """models: (reference, label) of the model picker's models; seconds_per_step: the last measured speed."""
        super().__init__(parent)
        self.setWindowTitle("X/Y/Z plot")
        self.base, self.seconds_per_step = base, seconds_per_step
        self.models: dict[str, str] = {}  # a name typed (a label, else a reference) -> the model it loads
        for ref, label in [*models, *((ref, ref) for ref, _ in models)]:
            self.models.setdefault(label, ref)
        self._plot: PlotRun | None = None
        intro = QLabel("Makes a picture for every combination of the values below, from the panel's settings "
                       "(and the canvas, for image to image and inpaint), then a grid of them with labelled axes. "
                       "Every picture and the grid are saved to the gallery.")
        intro.setWordWrap(True)
        grid = QGridLayout()
        grid.setColumnStretch(2, 1)
        grid.setColumnMinimumWidth(2, 320)
        grid.setColumnMinimumWidth(3, 28)  # the … button's, shown or not: the values field keeps its width
        choices = {SAMPLER: list(SAMPLERS), SCHEDULE: list(SCHEDULES), CHECKPOINT: [label for _, label in models]}
        self.rows = [AxisRow(key, self, grid, row, choices) for row, key in enumerate(KEYS)]
        syntax = QLabel(SYNTAX)
        syntax.setWordWrap(True)
        syntax.setEnabled(False)  # a hint, in the palette's quieter colour
        self.count = QLabel()
        self.count.setObjectName("plotCount")
        self.problem = QLabel()
        self.problem.setObjectName("plotProblem")
        self.problem.setWordWrap(True)
        self.problem.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        red = "#ff8a80" if is_dark(self.palette()) else "#b3261e"
        self.problem.setStyleSheet(f"#plotProblem {{ color: {red}; }}")
        self.problem.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.problem.setMinimumHeight(self.fontMetrics().lineSpacing() * 3)  # room for a sentence: nothing moves
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Queue plot")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(grid)
        layout.addWidget(syntax)
        layout.addWidget(self.count)
        layout.addWidget(self.problem)
        layout.addStretch(1)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(560)
        self.rows[0].type.setCurrentText(CFG)
        self.rows[1].type.setCurrentText(STEPS)
        self.update_count()

    def plot(self) -> PlotRun | None:
        """The plot typed, when every axis is right (None otherwise)."""
        return self._plot

    def update_count(self, *_args) -> None:
        """The live line: how many pictures, about how long; or the sentence that says what is wrong."""
        self._plot = None
        try:
            axes = [row.axis(self.models) for row in self.rows]
            if all(axis is None for axis in axes):
                self._say("Choose what an axis changes and type its values.", "")
                return
            plot = PlotRun(self.base, *axes)
            steps = plot.total_steps()  # makes every cell's request: a value that cannot be made raises
        except InvalidAxis as error:
            self._say("", str(error))
            return
        count = plot.pictures()
        time = about(self.seconds_per_step * steps) if self.seconds_per_step else UNKNOWN_TIME
        self._plot = plot
        self._say(f"{count} picture{'s' if count != 1 else ''} · {time}", "")

    def _say(self, count: str, problem: str) -> None:
        self.count.setText(count)
        self.problem.setText(problem)
        self.ok.setEnabled(self._plot is not None)

    def accept(self) -> None:
        if self._plot is not None:
            super().accept()
