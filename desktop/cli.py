"""`sfumato generate ...`: headless generation on the same engine as the app.

Prints the path of each image written (stdout) and progress (stderr);
exits 0 on success, 2 with a one-line reason on bad input, 1 when the
generation itself fails, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from desktop.core import modelfiles, paths
from desktop.core.errors import Cancelled, SfumatoError
from desktop.core.geometry import Extent, Margins
from desktop.core.imageio import load_image, load_mask
from desktop.core.outputs import save_result
from desktop.core.request import GenerationRequest, InpaintArea, MaskedContent, Mode
from desktop.core.samplers import SAMPLERS, SCHEDULES


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sfumato generate", description="Generate images without the window.")
    add = parser.add_argument
    add("--model", default="demo", help="a .safetensors file, a diffusers folder, a Hugging Face repo id, or 'demo'")
    add("--prompt", required=True)
    add("--negative", default="", help="negative prompt")
    add("--mode", choices=[m.value for m in Mode], default=None, help="default: txt2img, or img2img with --init")
    add("--init", type=Path, help="input image for img2img, inpaint and outpaint")
    add("--mask", type=Path, help="inpaint mask: white = repaint")
    add("--expand", type=Margins.parse, default=Margins(), metavar="L,T,R,B", help="outpaint margins in pixels")
    add("--strength", type=float, default=0.75, help="denoising strength (img2img, inpaint)")
    add("--steps", type=int, default=20)
    add("--cfg", type=float, default=7.0, help="CFG scale")
    add("--sampler", default="DPM++ 2M", help=f"one of: {', '.join(SAMPLERS)} (a ' Karras' suffix also works)")
    add("--schedule", default="Automatic", choices=SCHEDULES)
    add("--seed", type=int, default=-1, help="-1: random")
    add("--width", type=int, help="default: 512, or the input image's size")
    add("--height", type=int)
    add("--batch", type=int, default=1)
    add("--mask-blur", type=int, default=4)
    add("--masked-content", choices=[m.value for m in MaskedContent], default=MaskedContent.ORIGINAL.value)
    add("--inpaint-area", choices=[a.value for a in InpaintArea], default=InpaintArea.WHOLE.value)
    add("--padding", type=int, default=32, help="padding around the mask for --inpaint-area 'only masked'")
    add("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    add("--precision", choices=("auto", "fp16", "bf16", "fp32"), default="auto")
    add("--out", type=Path, help="output folder (default: Sfumato's output folder)")
    return parser


def request_from_args(args: argparse.Namespace) -> GenerationRequest:
    mode = Mode(args.mode) if args.mode else (Mode.IMG2IMG if args.init else Mode.TXT2IMG)
    init = load_image(args.init) if args.init else None
    if mode is not Mode.TXT2IMG and init is None:
        raise UsageError(f"--mode {mode.value} needs --init IMAGE")
    mask = load_mask(args.mask) if args.mask else None
    if mode is Mode.INPAINT and mask is None:
        raise UsageError("--mode inpaint needs --mask IMAGE")
    if mask is not None and init is not None and mask.shape != init.shape[:2]:
        raise UsageError(f"the mask is {mask.shape[1]}x{mask.shape[0]} but the image is {init.shape[1]}x{init.shape[0]}")
    default = Extent(512, 512) if init is None else _default_extent(init)
    return GenerationRequest(
        mode=mode,
        prompt=args.prompt,
        negative_prompt=args.negative,
        model=args.model,
        sampler=args.sampler,
        schedule=args.schedule,
        steps=args.steps,
        cfg_scale=args.cfg,
        seed=args.seed,
        width=args.width or default.width,
        height=args.height or default.height,
        batch_size=args.batch,
        strength=args.strength,
        init_image=init,
        mask=mask,
        mask_blur=args.mask_blur,
        masked_content=MaskedContent(args.masked_content),
        inpaint_area=InpaintArea(args.inpaint_area),
        inpaint_padding=args.padding,
        expand=args.expand,
    )


def _default_extent(image) -> Extent:
    h, w = image.shape[:2]
    return Extent(max(64, min(4096, round(w / 8) * 8)), max(64, min(4096, round(h / 8) * 8)))


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        request = request_from_args(args).resolved()
    except (UsageError, SfumatoError) as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return 2
    # Heavy imports only once the input is known to be good.
    from desktop.engine import devices, generate
    from desktop.engine.models import ModelManager

    try:
        choice = devices.choose(args.device, args.precision)
    except ValueError as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return 2
    progress = _Progress()
    models = ModelManager(choice)
    try:
        results = generate.run(request, progress.state, models)
        loaded = models.current
        model_hash = modelfiles.model_hash(loaded.info.path, cache=paths.cache_dir() / "model-hashes.json")
        folder = args.out or paths.output_dir()
        saved = [save_result(folder, r.image, r.request, r.seed, loaded.name, model_hash) for r in results]
    except OSError as error:
        progress.end()
        print(f"sfumato: could not write the image: {error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nsfumato: interrupted", file=sys.stderr)
        return 130
    except Cancelled:
        return 130
    except SfumatoError as error:
        progress.end()
        print(f"sfumato: {error}", file=sys.stderr)
        return 1
    progress.end()
    for path in saved:
        print(path)
    return 0


class _Progress:
    """Step progress on stderr: one updating line on a terminal, plain lines otherwise."""

    def __init__(self):
        from desktop.core.progress import TaskState

        self.tty = sys.stderr.isatty()
        self.state = TaskState(on_step=self.step, on_status=self.status)
        self._open = False

    def step(self, index: int, total: int, preview) -> None:
        bar = "#" * (20 * index // total)
        text = f"[{bar:<20}] step {index}/{total}"
        if self.tty:
            print(f"\r{text}", end="", file=sys.stderr, flush=True)
            self._open = True
        else:
            print(text, file=sys.stderr, flush=True)

    def status(self, text: str) -> None:
        self.end()
        print(text, file=sys.stderr, flush=True)

    def end(self) -> None:
        if self._open:
            print(file=sys.stderr)
            self._open = False
