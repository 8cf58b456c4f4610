"""The prompt panel: every value a generation needs, kept valid as it is typed.

The values scroll; what Generate will do and the Generate button stay fixed
below them, so they are on screen however short the window (`footer_buttons`
takes the window's Cancel button beside Generate).

Every value lives in `settings`, a GenerationSettings (desktop/core/
generation_settings.py); each widget is bound to one field of it
(desktop/ui/binding.py), so a value set there shows here and an edit here
lands there. Adding a control is a field there and one bound widget here.
`request()` and `set_request()` go through the settings' to_request() and
apply() (restoring the last session, "Use all parameters").

Model families (desktop/core/families.py): the model list carries each model's family and variant. Only the
family's samplers are listed, Shift and Distilled CFG show for the flow-matching families that take them, and
the controls of what the family lacks (LoRAs, control layers, hires fix, clip skip, emphasis) are disabled,
saying why. Choosing a model of another family or variant (not the same model again, not the window restoring
its last settings) sets that variant's recommended steps, CFG, sampler and guidance, as Forge's UI presets do,
or the values the person had for it when they last left it this session. A few-step model (the list's
FEWSTEP_ROLE: LCM, TCD, Hyper-SD, Lightning, Turbo, DMD2, by its name, metadata or the person's mark) is a preset of
its own in the same way, with its makers' steps, CFG, sampler and schedule (desktop/core/fewstep.py).

Fast (beside the sampler) applies fewstep.fast_plan for the chosen model: its own few-step settings, else the best
few-step LoRA of its family (`lora_source`, whose tag goes into the prompt once), with the TAESD decoder; when there
is no fast path nothing changes and the status says what to add. "Fast decode (TAESD)" is the request's decoder.

Signals:
    generate_requested(): the user pressed Generate (or Ctrl+Enter in a prompt).
    model_changed(str): another model was picked in the list (not when `set_models` or the settings choose one).
    size_changed(int, int): the width or height changed, by an edit, a preset, a request or the frame
        (the canvas frame follows, and ignores its own size).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.core import families, fewstep
from desktop.core.generation_settings import GenerationSettings, has_lora, supported_schedules, without_lora
from desktop.core.request import (HIRES_UPSCALERS, MAX_SIZE, MIN_SIZE, GenerationRequest, InpaintArea, MaskedContent,
                                  Mode)
from desktop.core.prompts import EMPHASIS_MODES
from desktop.ui.wheel_guard import guard_wheel
from desktop.core.samplers import SAMPLERS, SCHEDULES

from .binding import bind, bind_check, bind_combo_data, bind_combo_text, bind_spin, bind_text
from .token_counter import TokenCounter

#: Sizes that suit each family (what it was trained at, and common aspect ratios).
SIZE_PRESETS = {
    "sd1": [(512, 512), (512, 768), (768, 512), (640, 448), (448, 640)],
    "sd2": [(768, 768), (768, 1024), (1024, 768), (512, 512)],
    "sdxl": [(1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896), (1344, 768), (768, 1344)],
}
_MEGAPIXEL = [(1024, 1024), (896, 1152), (1152, 896), (832, 1216), (1216, 832), (768, 1344), (1344, 768)]
SIZE_PRESETS.update({family: _MEGAPIXEL for family in ("zimage", "flux2-klein", "flux1", "sd3")})

#: The model list's item data role of a model's variant (families.Variant: "dev", "schnell", ...).
VARIANT_ROLE = Qt.ItemDataRole.UserRole + 1
#: The model list's item data role of a model's few-step kind (fewstep.KINDS; "" when it is not a few-step model).
FEWSTEP_ROLE = Qt.ItemDataRole.UserRole + 2
GUIDANCE_ROLE = Qt.ItemDataRole.UserRole + 3  # True: the model takes the CFG scale as an embedding (full LCM: CFG 8)

FAST_TIP = ("Fast: a few steps with the sampler, CFG and schedule this model's few-step kind wants (its own, or a "
            "few-step LoRA of its family added to the prompt), and the TAESD decoder")
FAST_DECODE_TIP = ("Decode the picture with the tiny TAESD decoder instead of the model's VAE: much faster on a "
                   "CPU, a little softer. Needs TAESD's weights in models/taesd (taesdxl for SDXL); without them the "
                   "full VAE decodes and the status says so")
LISTING_LORAS = "Looking for few-step LoRAs in the LoRA folders..."

#: The heading above the demo models in the model list ("demo", "demo:<kind>"), after the real models.
DEMO_HEADING = "Demo models (random weights)"

#: What each family feature's controls do, for the sentence of a family that lacks it.
FEATURE_WORDS = {families.LORAS: "LoRAs or embeddings", families.EMBEDDINGS: "embeddings",
                 families.CONTROLS: "control layers or reference pictures",
                 families.HIRES: "the hires fix", families.CLIP_SKIP: "Clip skip", families.EMPHASIS: "emphasis modes"}


def lacks(family: str, feature: str) -> str:
    """Why a model of `family` can't use `feature` ("FLUX.1 models can't use LoRAs ... yet"); "" when it can."""
    if families.supports(family, feature):
        return ""
    return f"{families.spec(family).label} models can't use {FEATURE_WORDS[feature]} in Sfumato yet"


class SizeSpinBox(QSpinBox):
    """A pixel size, 64..4096: the arrows step by 8, and any size can be typed (the frame can be any size)."""

    def __init__(self):
        super().__init__()
        self.setRange(MIN_SIZE, MAX_SIZE)
        self.setSingleStep(8)
        self.setSuffix(" px")
        self.setCorrectionMode(QSpinBox.CorrectionMode.CorrectToNearestValue)
        self.setKeyboardTracking(False)

    def fixup(self, text: str) -> str:
        digits = "".join(c for c in text if c.isdigit())
        if not digits:
            return str(self.value())
        return str(min(MAX_SIZE, max(MIN_SIZE, int(digits))))


class PromptEdit(QPlainTextEdit):
    """Multi-line prompt; Ctrl+Enter asks to generate instead of adding a line."""

    submitted = Signal()

    def __init__(self, placeholder: str):
        super().__init__()
        self.setPlaceholderText(placeholder)
        self.setTabChangesFocus(True)

    def keyPressEvent(self, event):
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


#: What each mode does, shown above the Generate button (the canvas frame decides the mode).
MODE_TEXT = {
    Mode.TXT2IMG: ("Text to image", "The frame is empty: a new picture is made in it."),
    Mode.IMG2IMG: ("Image to image", "The frame's picture is repainted; Strength says how much."),
    Mode.INPAINT: ("Inpaint", "Only the masked part of the frame is repainted."),
    Mode.OUTPAINT: ("Outpaint", "The empty part of the frame is filled, blending into the picture."),
}


class PromptPanel(QWidget):
    """Signals besides the settings': reference_dropped(object): a picture dropped on the panel (a file path,
    or a QImage), to guide the next generation as a reference."""

    generate_requested = Signal()
    model_changed = Signal(str)
    size_changed = Signal(int, int)
    reference_dropped = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = GenerationSettings()
        self.mode = Mode.TXT2IMG
        self.last_seed: int | None = None
        self._kept: dict[tuple[str, str], dict] = {}  # the values left behind in each family preset (preset_key)
        self._preset: tuple[str, str] | None = None  # the preset the values are for; None before the first list
        self._listing = False  # set_models is choosing the model
        # Fast's LoRAs: name -> an object with .few_step and .family (fewstep.LoraInfo), or None while they are
        # being listed (the window's AddonTools sets it, and calls loras_listed() when they are)
        self.lora_source: Callable[[], Mapping[str, object] | None] = lambda: {}
        self.few_step_marks: Callable[[], Mapping[str, str]] = lambda: {}  # the settings' few_step_marks
        self._fast_waiting = False  # Fast was pressed while the LoRAs were being listed
        self._fast_lora: tuple[str, str] | None = None  # (LoRA, family) of the tag Fast added to the prompt
        self.fast_note = ""  # what the last Fast did, or why it did nothing
        self._build()
        self.setAcceptDrops(True)

    # -- a picture dropped on the panel: a reference --------------------------------------

    def dragEnterEvent(self, event) -> None:
        data = event.mimeData()
        if data.hasUrls() and any(url.isLocalFile() for url in data.urls()) or data.hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        data = event.mimeData()
        files = [url.toLocalFile() for url in data.urls() if url.isLocalFile()] if data.hasUrls() else []
        if files:
            self.reference_dropped.emit(files[0])
        elif data.hasImage():
            self.reference_dropped.emit(QImage(data.imageData()))
        else:
            return
        event.acceptProposedAction()

    # -- building -------------------------------------------------------------------

    def _build(self) -> None:
        self.prompt = PromptEdit("Describe the picture: subject, style, light...")
        self.negative = PromptEdit("What to avoid (negative prompt)")
        self.prompt.setMinimumHeight(90)
        self.negative.setMaximumHeight(70)
        for edit in (self.prompt, self.negative):
            edit.submitted.connect(self.generate_requested)
        self.prompt_tokens, self.negative_tokens = (
            TokenCounter(edit, self.settings) for edit in (self.prompt, self.negative))

        self.model = QComboBox()
        self.model.setToolTip("The model that paints. Add models in the Models window.")

        self.sampler = QComboBox()
        self.sampler.addItems(list(SAMPLERS))
        self.fast_button = QToolButton(text="Fast")
        self.fast_button.setToolTip(FAST_TIP)
        self.fast_button.clicked.connect(self.apply_fast)
        self.fast_decode = QCheckBox("Fast decode (TAESD)")
        self.fast_decode.setToolTip(FAST_DECODE_TIP)
        self.schedule = QComboBox()
        self.schedule.addItems(list(SCHEDULES))

        self.steps = QSpinBox()
        self.steps.setToolTip("Denoising steps: more is slower and usually finer (20-30 is typical)")
        self.cfg = QDoubleSpinBox()
        self.cfg.setSingleStep(0.5)
        self.cfg.setDecimals(GenerationSettings.field("cfg_scale").decimals)
        self.cfg.setToolTip("CFG scale: how strictly to follow the prompt (5-9 is typical; 1 turns it off and the "
                            "negative prompt with it, as FLUX.1 and the turbo models want)")
        self.shift = QDoubleSpinBox()
        self.shift.setDecimals(GenerationSettings.field("shift").decimals)
        self.shift.setSingleStep(0.5)
        self.shift.setSpecialValueText("Automatic")
        self.shift.setToolTip("Shift of the noise schedule: higher spends more steps on the composition. Automatic "
                              "(0) is the model's own, which follows the picture's size where the model does")
        self.shift_label = QLabel("Shift")
        self.distilled = QDoubleSpinBox()
        self.distilled.setDecimals(GenerationSettings.field("distilled_cfg").decimals)
        self.distilled.setSingleStep(0.5)
        self.distilled.setToolTip("Distilled CFG Scale (Forge's name): the guidance FLUX.1 [dev] was distilled to "
                                  "take, how strictly it follows the prompt at no extra cost (3.5 is typical)")
        self.distilled_label = QLabel("Distilled")

        self.seed = QDoubleSpinBox()  # QSpinBox stops at 2**31 - 1; seeds go to 2**32 - 1
        self.seed.setDecimals(0)
        self.seed.setSpecialValueText("Random")
        self.seed.setToolTip("-1 (Random) picks a new seed each time; the same seed repeats a picture")
        random_seed = QToolButton(text="Random")
        random_seed.setToolTip("New random seed each time (Ctrl+R)")
        random_seed.clicked.connect(lambda: self.settings.set("seed", -1))
        self.reuse_seed = QToolButton(text="Reuse")
        self.reuse_seed.setToolTip("Use the seed of the last picture (Ctrl+Shift+R)")
        self.reuse_seed.setEnabled(False)
        self.reuse_seed.clicked.connect(self._reuse_seed)
        QShortcut(QKeySequence("Ctrl+R"), self, activated=random_seed.click)
        QShortcut(QKeySequence("Ctrl+Shift+R"), self, activated=self.reuse_seed.click)

        self.width_box, self.height_box = SizeSpinBox(), SizeSpinBox()
        self.width_box.setToolTip("Width of the generation frame on the canvas")
        self.height_box.setToolTip("Height of the generation frame on the canvas")
        self.aspect_lock = QCheckBox("Lock")
        self.aspect_lock.setToolTip("Keep the aspect ratio when changing width or height")
        self.presets = QComboBox()
        self.presets.setToolTip("Sizes the model was trained for")
        self.presets.activated.connect(self._apply_preset)

        self.batch_size = QSpinBox()
        self.batch_size.setToolTip("Pictures made together in one run (uses more memory)")
        self.batch_count = QSpinBox()
        self.batch_count.setToolTip("Runs queued one after another")
        self.clip_skip = QSpinBox()
        self.emphasis_label = QLabel("Emphasis")
        self.clip_skip.setToolTip("Clip skip: 1 reads the prompt with the text encoder's last layer, 2 with the one "
                                  "before it (some anime models want 2). SD 1.x models only: SD 2.x and SDXL "
                                  "models read a fixed layer, as in AUTOMATIC1111")
        self.emphasis = QComboBox()
        self.emphasis.addItems(EMPHASIS_MODES)
        self.emphasis.setToolTip("How (word:1.2) and [word] weights apply, as AUTOMATIC1111's Emphasis setting:\n"
                                 "Original: weight each word, then keep the prompt's overall strength\n"
                                 "No norm: weight each word only\n"
                                 "Ignore: read the brackets and weights, apply none\n"
                                 "None: brackets are ordinary characters")

        self.strength = QDoubleSpinBox()
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(GenerationSettings.field("strength").decimals)
        self.strength.setToolTip("Denoising strength: how much of an input image to repaint (img2img, inpaint)")
        self.strength_label = QLabel("Strength")

        self.mask_blur = QSpinBox()
        self.mask_blur.setSuffix(" px")
        self.mask_blur.setToolTip("Soften the mask's edge by this many pixels so the repainted part blends in")
        self.masked_content = QComboBox()
        for content, tip in ((MaskedContent.ORIGINAL, "Start from what is there"),
                             (MaskedContent.FILL, "Start from colours spread in from around the mask"),
                             (MaskedContent.LATENT_NOISE, "Start from noise: ignore what is there")):
            self.masked_content.addItem(content.value.capitalize(), content)
            self.masked_content.setItemData(self.masked_content.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.masked_content.setToolTip("What the masked area starts from")
        self.inpaint_area = QComboBox()
        self.inpaint_area.addItem("Whole frame", InpaintArea.WHOLE)
        self.inpaint_area.addItem("Only masked", InpaintArea.ONLY_MASKED)
        self.inpaint_area.setToolTip("Only masked: generate at full size around the mask alone, for more detail")
        self.inpaint_padding = QSpinBox()
        self.inpaint_padding.setSuffix(" px")
        self.inpaint_padding.setToolTip("Only masked: how much of the surroundings the model sees around the mask")
        self.inpaint_box = QWidget()
        inpaint_form = QFormLayout(self.inpaint_box)
        inpaint_form.setContentsMargins(0, 0, 0, 0)
        inpaint_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        inpaint_form.addRow("Mask blur", self.mask_blur)
        inpaint_form.addRow("Masked content", self.masked_content)
        inpaint_form.addRow("Inpaint area", self.inpaint_area)
        inpaint_form.addRow("Padding", self.inpaint_padding)

        self._build_hires()

        self.mode_label = QLabel()
        self.mode_label.setObjectName("modeLabel")
        self.mode_label.setWordWrap(True)
        self.mode_label.setStyleSheet("#modeLabel { padding: 4px; border-radius: 4px;"
                                      " background: palette(alternate-base); }")

        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generate")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)")
        self.generate_button.setMinimumHeight(40)
        self.generate_button.setStyleSheet(
            "#generate { font-weight: bold; font-size: 11pt; color: palette(highlighted-text);"
            " background: palette(highlight); border-radius: 4px; }"
            "#generate:pressed { background: palette(dark); }"
        )
        self.generate_button.clicked.connect(self.generate_requested)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("Model", self.model)
        form.addRow("Sampler", _row(self.sampler, self.fast_button))
        form.addRow("Schedule", self.schedule)
        form.addRow("", self.fast_decode)
        form.addRow("Steps", _row(self.steps, self.shift_label, self.shift))
        form.addRow("CFG scale", _row(self.cfg, self.distilled_label, self.distilled))
        form.addRow("Clip skip", _row(self.clip_skip, self.emphasis_label, self.emphasis))
        form.addRow("Seed", _row(self.seed, random_seed, self.reuse_seed))
        form.addRow("Width", _row(self.width_box, self.aspect_lock))
        form.addRow("Height", self.height_box)
        form.addRow("Presets", self.presets)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Batch count", self.batch_count)
        form.addRow(self.strength_label, self.strength)

        values = QWidget()
        layout = QVBoxLayout(values)
        self.addons_button = QToolButton(text="LoRAs && embeddings...")
        self.addons_button.setToolTip("Choose a LoRA or an embedding to put in the prompt (Ctrl+L); "
                                      "typing <lora: in a prompt offers their names too")
        QShortcut(QKeySequence("Ctrl+L"), self, activated=self.addons_button.click)
        layout.addWidget(_row(QLabel("Prompt"), self.addons_button, self.prompt_tokens))
        layout.addWidget(self.prompt, 2)
        layout.addWidget(_row(QLabel("Negative prompt"), self.negative_tokens))
        layout.addWidget(self.negative, 1)
        layout.addLayout(form)
        layout.addWidget(self.hires_check)
        layout.addWidget(self.hires_body)
        layout.addWidget(self.inpaint_box)
        scroll = QScrollArea()
        scroll.setWidget(values)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(340)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.footer_buttons = QHBoxLayout()
        self.footer_buttons.addWidget(self.generate_button, 1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll, 1)
        footer = QVBoxLayout()
        footer.setContentsMargins(6, 0, 6, 6)
        footer.addWidget(self.mode_label)
        footer.addLayout(self.footer_buttons)
        outer.addLayout(footer)
        self._bind()
        guard_wheel(self)  # the wheel scrolls the panel, not the field under the pointer
        self.set_mode(Mode.TXT2IMG)

    def _bind(self) -> None:
        """Each widget to its field; then the signals that report the person's own edits."""
        s = self.settings
        bind_text(s, "prompt", self.prompt)
        bind_text(s, "negative_prompt", self.negative)
        bind_combo_data(s, "model", self.model, key=lambda data: data[0] if data else None)
        bind_combo_text(s, "sampler", self.sampler)
        bind_combo_text(s, "schedule", self.schedule)
        bind_combo_text(s, "emphasis", self.emphasis)
        for name, box in (("steps", self.steps), ("cfg_scale", self.cfg), ("shift", self.shift),
                          ("distilled_cfg", self.distilled), ("clip_skip", self.clip_skip),
                          ("seed", self.seed), ("width", self.width_box), ("height", self.height_box),
                          ("batch_size", self.batch_size), ("batch_count", self.batch_count),
                          ("strength", self.strength), ("mask_blur", self.mask_blur),
                          ("inpaint_padding", self.inpaint_padding)):
            bind_spin(s, name, box)
        bind_check(s, "aspect_locked", self.aspect_lock)
        bind_combo_data(s, "masked_content", self.masked_content)
        bind_combo_data(s, "inpaint_area", self.inpaint_area)
        bind_check(s, "hires_enabled", self.hires_check)
        bind(s, "decoder", self.fast_decode, self.fast_decode.toggled,
             lambda: "tiny" if self.fast_decode.isChecked() else "full",
             lambda value: self.fast_decode.setChecked(value == "tiny"))
        bind_combo_text(s, "hires_upscaler", self.hires_upscaler)
        for name, box in (("hires_scale", self.hires_scale), ("hires_steps", self.hires_steps),
                          ("hires_denoise", self.hires_denoise), ("hires_resize_width", self.hires_resize_width),
                          ("hires_resize_height", self.hires_resize_height)):
            bind_spin(s, name, box)
        s.changed.connect(self._setting_changed)
        self._show_schedules(s.sampler)
        self._tips = {widget: widget.toolTip() for widget in self._feature_widgets()}  # the tips a family may replace
        self._show_family()
        s.size_changed.connect(self.size_changed.emit)
        self.model.currentIndexChanged.connect(lambda _index: self.model_changed.emit(self.model_ref()))

    def _setting_changed(self, name: str, value: object) -> None:
        if name == "sampler":
            self._show_schedules(value)
        elif name == "model" and not self._listing:  # the person picked it (or "Use all" chose it)
            self._use_family(switched=True)
        elif name == "inpaint_area" or name.startswith("hires_") or name in ("width", "height"):
            self.set_mode(self.mode)

    # -- models -------------------------------------------------------------------------

    def set_hires_upscalers(self, files: list[str]) -> None:
        """The hires fix's upscaler choices: A1111's built-in ones and the demo upscaler, then the names of the
        upscaler files; the chosen one stays chosen, and stays listed when no file has its name (a picture's
        upscaler that is missing here: the run names it before any work)."""
        box, wanted = self.hires_upscaler, self.settings.hires_upscaler
        names = [*HIRES_UPSCALERS, *(name for name in files if name not in HIRES_UPSCALERS)]
        if wanted and wanted not in names:
            names.append(wanted)
        if [box.itemText(i) for i in range(box.count())] == names:
            return
        box.blockSignals(True)
        box.clear()
        box.addItems(names)
        box.setCurrentText(wanted)
        box.blockSignals(False)

    def set_models(self, models: list[tuple], current: str) -> None:
        """models: [(reference, label, family)], [(reference, label, family, variant)], [(reference, label, family,
        variant, few_step)] or [(..., few_step, guidance_embedded)], shown in order (the window lists the demo models, "demo" and "demo:<kind>", last: under
        the DEMO_HEADING when there are several); selects `current` if present. An item's data is (reference,
        family), its VARIANT_ROLE data the variant, its FEWSTEP_ROLE data the few-step kind (fewstep.KINDS or "").

        Another model than before, of another family or variant, takes that one's settings (see the module's notes);
        the first list (the window restoring its last settings) and the same model again keep the values."""
        rows = [(ref, label, family, *(list(rest) + ["", "", False])[:3]) for ref, label, family, *rest in models]
        demos = sum(families.demo_kind(row[0]) is not None for row in rows)
        before = self.settings.model
        self.model.blockSignals(True)
        self.model.clear()
        for ref, label, family, variant, few_step, embedded in rows:
            if demos > 1 and families.demo_kind(ref) is not None and self.model.findText(DEMO_HEADING) < 0:
                if self.model.count():
                    self.model.insertSeparator(self.model.count())
                self.model.addItem(DEMO_HEADING)
                self.model.model().item(self.model.count() - 1).setEnabled(False)
            self.model.addItem(label, (ref, family))
            self.model.setItemData(self.model.count() - 1, variant, VARIANT_ROLE)
            self.model.setItemData(self.model.count() - 1, few_step or "", FEWSTEP_ROLE)
            self.model.setItemData(self.model.count() - 1, embedded is True, GUIDANCE_ROLE)
        index = next((i for i in range(self.model.count()) if (self.model.itemData(i) or ("",))[0] == current),
                     next((i for i in range(self.model.count()) if self.model.itemData(i)), -1))
        self.model.setCurrentIndex(index)
        self.model.blockSignals(False)
        self._listing = True
        try:
            self.settings.model = self.model.itemData(index)[0] if index >= 0 else "demo"
        finally:
            self._listing = False
        self._use_family(switched=self.settings.model != before)

    def listed_models(self) -> list[tuple[str, str]]:
        """The models in the list, as (reference, label)."""
        return [(self.model.itemData(i)[0], self.model.itemText(i)) for i in range(self.model.count())
                if self.model.itemData(i)]

    def choose_model(self, ref: str) -> None:
        """Choose a listed model as the person would (its family's values come, model_changed is sent)."""
        index = next((i for i in range(self.model.count()) if (self.model.itemData(i) or ("",))[0] == ref), -1)
        if index >= 0:
            self.model.setCurrentIndex(index)

    def model_ref(self) -> str:
        return self.settings.model

    def family(self) -> str:
        data = self.model.currentData()
        return data[1] if data else "sd1"

    def variant(self) -> str:
        """The chosen model's variant within its family ("dev", "schnell", ...; "" when not known)."""
        return self.model.currentData(VARIANT_ROLE) or ""

    def few_step(self) -> str:
        """The chosen model's few-step kind (fewstep.KINDS), "" when it is not a few-step model."""
        return self.model.currentData(FEWSTEP_ROLE) or ""

    def guidance_embedded(self) -> bool:
        """Whether the chosen model takes the CFG scale as an embedding (a full LCM checkpoint: CFG 8, not 1)."""
        return self.model.currentData(GUIDANCE_ROLE) is True

    def few_step_recipe(self) -> fewstep.Recipe | None:
        """The settings of the chosen few-step model (the step count its name says, where it says one)."""
        kind = self.few_step()
        if kind not in fewstep.KINDS or families.is_flow(self.family()):
            return None
        name = self._model_name()
        return fewstep.recipe(kind, self.family(), fewstep.steps_in_name(name),
                              guided=fewstep.guided_in_name(name) or self.guidance_embedded())

    def _model_name(self) -> str:
        """The chosen model's file or folder name (what its few-step kind and step count are read from)."""
        return Path(self.model_ref().rstrip("/\\")).name or self.model.currentText()

    def preset_key(self) -> tuple[str, str]:
        """Which values go with the chosen model: one preset for SD 1.x, 2.x and SDXL (A1111 keeps its values
        whichever of them is chosen), one per few-step recipe of theirs, one per variant of a flow-matching family
        ("" and "dev" of FLUX.1 alike)."""
        family = self.family()
        if not families.is_flow(family):
            made = self.few_step_recipe()
            return ("sd", "") if made is None else ("sd", f"{made.label} {made.steps} steps")
        return (family, families.spec(family).variant(self.variant()).label)

    def _use_family(self, switched: bool) -> None:
        """The chosen model's family: on a switch to another preset, leave the values of the last one behind and
        take this one's (the person's own from earlier, else its recommendation); then keep to what it can run."""
        key = self.preset_key()
        if switched and self._preset is not None and key != self._preset:
            self._kept[self._preset] = self.settings.family_values()
            if key in self._kept:
                self.settings.take_values(self._kept[key])
            elif self.few_step_recipe() is not None:
                self.settings.use_recipe(self.few_step_recipe())
            else:
                self.settings.recommend(self.family(), self.variant())
        self._preset = key
        self._drop_fast_lora()
        self.settings.fit(self.family(), self.variant())
        self._show_family()

    # -- Fast -------------------------------------------------------------------------------------

    def apply_fast(self) -> None:
        """Fast: the chosen model's few-step plan (fewstep.fast_plan) into the values; when it has none, nothing
        changes and the status says what to add. A model that is not a few-step one needs the LoRA list: while it
        is being listed, Fast waits for loras_listed()."""
        kind = self.few_step() or fewstep.demo_kind(self.model_ref())
        loras: Mapping[str, object] | None = {}
        if not kind and not families.is_flow(self.family()):
            loras = self.lora_source()
            if loras is None:
                self._fast_waiting = True
                self._say_fast(LISTING_LORAS)
                return
        self._fast_waiting = False
        try:
            plan = fewstep.fast_plan(self.family(), kind, loras, model_name=self._model_name(),
                                     variant=self.variant(), marks=self.few_step_marks(),
                                     guidance_embedded=self.guidance_embedded())
        except fewstep.NoFastPath as error:
            self._say_fast(str(error))
            self.fast_button.setToolTip(f"{FAST_TIP}.\n{error}")
            return
        self._drop_fast_lora(keep=plan.lora)
        if plan.lora and not has_lora(self.settings.prompt, plan.lora):  # the person's own tag stays theirs
            self._fast_lora = (plan.lora, self.family())
        self.settings.apply_fast(plan)
        self.fast_button.setToolTip(FAST_TIP)
        self._say_fast(plan.note)

    def _drop_fast_lora(self, keep: str = "") -> None:
        """Take out the few-step LoRA tag Fast added for another family than the chosen model's (SD 1.5's LCM LoRA
        on an SDXL model), or another one than `keep`; the person's own tags stay."""
        if self._fast_lora is None:
            return
        name, family = self._fast_lora
        if family == self.family() and (not keep or keep.lower() == name.lower()):
            return
        self._fast_lora = None
        if has_lora(self.settings.prompt, name):
            self.settings.prompt = without_lora(self.settings.prompt, name)

    def loras_listed(self) -> None:
        """The LoRA list arrived: a Fast that waited for it runs now."""
        if self._fast_waiting:
            self.apply_fast()

    def _say_fast(self, text: str) -> None:
        self.fast_note = text
        window = self.window()
        if hasattr(window, "note"):
            window.note(text)

    def _feature_widgets(self) -> dict[QWidget, str]:
        """The panel's controls of family features (families.LORAS, ...): disabled, saying why, where it lacks one."""
        return {self.addons_button: families.LORAS, self.clip_skip: families.CLIP_SKIP,
                self.emphasis: families.EMPHASIS, self.emphasis_label: families.EMPHASIS,
                self.hires_check: families.HIRES}

    def _show_family(self) -> None:
        """Its samplers, its size presets, Shift and Distilled CFG where it takes them, its features' controls."""
        family = self.family()
        spec = families.spec(family)
        names = list(spec.samplers) if spec and spec.samplers else list(SAMPLERS)
        if [self.sampler.itemText(i) for i in range(self.sampler.count())] != names:
            self.sampler.blockSignals(True)
            self.sampler.clear()
            self.sampler.addItems(names)
            self.sampler.blockSignals(False)
        if self.sampler.currentText() != self.settings.sampler:
            blocked = self.sampler.blockSignals(True)
            self.sampler.setCurrentText(self.settings.sampler)
            self.sampler.blockSignals(blocked)
        flow = families.is_flow(family)
        distilled = flow and spec.variant(self.variant()).distilled_cfg is not None
        # The counters count CLIP's 75-token chunks; the flow families' T5 and Qwen3 encoders read 256 to 512 tokens
        # of another vocabulary (diffusers' max_sequence_length), which a count of CLIP's would only misreport.
        for widget, shown in ((self.shift, flow), (self.shift_label, flow), (self.distilled, distilled),
                              (self.distilled_label, distilled), (self.prompt_tokens, not flow),
                              (self.negative_tokens, not flow)):
            widget.setVisible(shown)
        for widget, feature in self._feature_widgets().items():
            why = lacks(family, feature)
            widget.setToolTip(why or self._tips[widget])
            if widget is not self.hires_check:  # _show_hires: the mode decides too
                widget.setEnabled(not why)
        if self.addons_button.isEnabled() and not families.supports(family, families.EMBEDDINGS):
            self.addons_button.setToolTip(f"Choose a {spec.label} LoRA to put in the prompt (Ctrl+L); "
                                          f"{lacks(family, families.EMBEDDINGS)}")
        self._update_presets()
        self._show_hires(self.mode)

    def _update_presets(self) -> None:
        self.presets.clear()
        self.presets.addItem("Choose a size...")
        for w, h in SIZE_PRESETS.get(self.family().removesuffix("-refiner"), SIZE_PRESETS["sd1"]):
            self.presets.addItem(f"{w} x {h}", (w, h))

    def _apply_preset(self, index: int) -> None:
        size = self.presets.itemData(index)
        if size:
            self.settings.set_size(*size)
        self.presets.setCurrentIndex(0)

    # -- values -------------------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        """Show what Generate will do; only the settings that apply to it can be changed."""
        self.mode = mode
        uses_strength = mode in (Mode.IMG2IMG, Mode.INPAINT)
        self.strength.setEnabled(uses_strength)
        self.strength_label.setEnabled(uses_strength)
        self.inpaint_box.setVisible(mode in (Mode.INPAINT, Mode.OUTPAINT))
        for widget in (self.masked_content, self.inpaint_area, self.inpaint_padding):
            widget.setEnabled(mode is Mode.INPAINT)
        self.inpaint_padding.setEnabled(mode is Mode.INPAINT and self.settings.inpaint_area is InpaintArea.ONLY_MASKED)
        self._show_hires(mode)
        title, text = MODE_TEXT[mode]
        hires = self.settings.to_request().hires
        if mode is Mode.TXT2IMG and hires.enabled:
            size = hires.target(self.settings.width, self.settings.height)
            text = text.removesuffix(".") + f", then the hires fix makes it {size.width}x{size.height}."
        self.mode_label.setText(f"<b>{title}</b>: {text}")

    def _build_hires(self) -> None:
        """A1111's "Hires. fix" group: checked, it opens; unchecked, only its check box shows (the panel stays short)."""
        self.hires_check = QCheckBox("Hires fix")
        self.hires_check.setToolTip("Text to image in two passes, as AUTOMATIC1111's Hires. fix: a picture at the "
                                  "frame's size, upscaled, then repainted at that size for more detail")
        self.hires_upscaler = QComboBox()
        self.hires_upscaler.addItems(list(HIRES_UPSCALERS))
        self.hires_upscaler.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.hires_upscaler.setMinimumContentsLength(12)  # the longest names are cut, not the panel widened
        self.hires_upscaler.setToolTip("Latent: upscale the first pass before it is decoded (needs a denoising "
                                       "strength of 0.5 or more, or it blurs). Lanczos, Nearest: upscale the "
                                       "picture, which keeps more of it at a low strength. Demo upscaler and the "
                                       "upscaler files: the model, then Lanczos to the size")
        self.hires_scale = QDoubleSpinBox()
        self.hires_scale.setSingleStep(0.25)
        self.hires_scale.setDecimals(GenerationSettings.field("hires_scale").decimals)
        self.hires_scale.setPrefix("x ")
        self.hires_scale.setToolTip("The final picture is the frame's size times this (unless Resize to is set)")
        self.hires_resize_width, self.hires_resize_height = QSpinBox(), QSpinBox()
        for box, side in ((self.hires_resize_width, "width"), (self.hires_resize_height, "height")):
            box.setSingleStep(8)
            box.setSpecialValueText("Auto")
            box.setToolTip(f"Resize to this {side} instead of Upscale by; Auto follows the other side's aspect "
                           "ratio (both Auto: Upscale by sets the size)")
        self.hires_steps = QSpinBox()
        self.hires_steps.setSpecialValueText("Same as Steps")
        self.hires_steps.setToolTip("Steps of the second pass; all of them run, whatever the denoising strength")
        self.hires_denoise = QDoubleSpinBox()
        self.hires_denoise.setSingleStep(0.05)
        self.hires_denoise.setDecimals(GenerationSettings.field("hires_denoise").decimals)
        self.hires_denoise.setToolTip("Denoising strength of the second pass: how much of the upscaled picture is "
                                      "repainted (0.7 is A1111's default)")
        self.hires_body = QFrame()
        self.hires_body.setFrameShape(QFrame.Shape.StyledPanel)
        hires_form = QFormLayout(self.hires_body)
        hires_form.setContentsMargins(6, 6, 6, 6)
        hires_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        hires_form.addRow("Upscaler", self.hires_upscaler)
        hires_form.addRow("Upscale by", self.hires_scale)
        resize = _row(self.hires_resize_width, QLabel("x"), self.hires_resize_height)
        resize.layout().setStretch(2, 1)  # the two sides alike
        hires_form.addRow("Resize to", resize)
        hires_form.addRow("Hires steps", self.hires_steps)
        hires_form.addRow("Denoising strength", self.hires_denoise)

    def _show_hires(self, mode: Mode) -> None:
        """Open when checked; only text to image makes a first pass to upscale, so other modes cannot use it."""
        self.hires_body.setVisible(self.settings.hires_enabled)
        for widget in (self.hires_check, self.hires_body):
            widget.setEnabled(mode is Mode.TXT2IMG and families.supports(self.family(), families.HIRES))
        self.hires_check.setText("Hires fix" if mode is Mode.TXT2IMG else "Hires fix (text to image only)")

    def set_size(self, width: int, height: int) -> None:
        """Show the frame's size (whatever the aspect lock)."""
        self.settings.set_size(width, height)

    def request(self) -> GenerationRequest:
        return self.settings.to_request()

    def set_request(self, request: GenerationRequest) -> None:
        """Take a request's values (the model stays); what the chosen model's family can't run stays off."""
        self.settings.apply(request)
        self.settings.fit(self.family(), self.variant())

    def remember_seed(self, seed: int) -> None:
        self.last_seed = seed
        self.reuse_seed.setEnabled(True)
        self.reuse_seed.setToolTip(f"Use the seed of the last picture, {seed} (Ctrl+Shift+R)")

    def _reuse_seed(self) -> None:
        if self.last_seed is not None:
            self.settings.seed = self.last_seed

    def _show_schedules(self, sampler: str) -> None:
        """Only the schedules the sampler supports can be picked (the settings move off one it does not)."""
        supported = supported_schedules(sampler)
        for row, name in enumerate(SCHEDULES):
            self.schedule.model().item(row).setEnabled(name in supported)


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if i == 0 else 0)
    return box
