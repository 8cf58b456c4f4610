"""`sfumato upscale ...`: enlarge pictures with an upscaler model, without the window.

    sfumato upscale --input IMG|DIR [--scale 2 | --size WxH] [--upscaler demo|NAME|PATH] [--out DIR]
                    [--detail STRENGTH --model M --prompt TEXT [--negative TEXT] [--steps N] [--cfg X]
                     [--sampler NAME] [--seed N]]

--detail adds detail after the upscale: one img2img pass at that denoising strength (0.35 is a good start)
over the whole picture in blended latent tiles (desktop/engine/detail.py); its result is
``<name>-x<scale>-detail.png`` with the pass's parameters as A1111's img2img writes them, then the
Postprocess keys.

A folder input processes every picture in it (not its subfolders), in name order, skipping those whose
result is already in the output folder, so an interrupted run goes on where it stopped. Each result is
``<out>/<name>-x<scale>.png`` (``-<W>x<H>`` for --size) with the source picture's parameters and A1111's
``Postprocess upscale by`` / ``Postprocess upscaler``. Prints each written path (stdout) and progress, one
line per picture and a bar of tiles (stderr). Exits 0 when every picture was upscaled or skipped, 2 with a
one-line reason on bad input, 1 when a picture failed (the others are still done), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from desktop.cli import _Parser, _print_path, _Progress, _reason, start_backend, UsageError
from desktop.core import credentials, marking, paths, settings
from desktop.core.backend import UpscaleJob
from desktop.core.errors import Cancelled, InvalidRequest, SfumatoError
from desktop.core.geometry import Extent
from desktop.core.imageio import load_image, save_png
from desktop.core.postprocess import (DEMO_UPSCALER, MAX_SCALE, DetailSettings, UpscaleRequest, UpscalerError,
                                      scale_text)
from desktop.core.request import Conditioning, Sampling

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".tga", ".ppm", ".qoi", ".avif")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sfumato upscale", description="Enlarge pictures with an upscaler model.")
    add = parser.add_argument
    add("--input", type=Path, required=True, help="a picture, or a folder: every picture in it")
    add("--scale", type=float, default=2.0, help=f"how many times larger (more than 0, at most {MAX_SCALE:g})")
    add("--size", type=_size, metavar="WxH", help="the exact size of the result instead of --scale")
    add("--upscaler", default=DEMO_UPSCALER,
        help="'demo', an upscaler file (.safetensors/.pth), the name of one in your upscaler folders, or "
             "Lanczos / Nearest (no model)")
    add("--out", type=Path, help="output folder (default: the 'upscaled' folder in Sfumato's output folder)")
    add("--detail", type=float, metavar="STRENGTH",
        help="add detail after the upscale: an img2img pass at this denoising strength (such as 0.35)")
    add("--model", default="demo", help="the model of the detail pass: a .safetensors file, a diffusers folder or 'demo'")
    add("--prompt", default="", help="the prompt of the detail pass")
    add("--negative", default="", help="the negative prompt of the detail pass")
    add("--steps", type=int, default=20, help="the detail pass's schedule (it runs steps x strength of them)")
    add("--cfg", type=float, default=7.0, help="CFG scale of the detail pass")
    add("--sampler", default="Euler a", help="sampler of the detail pass (default: Euler a)")
    add("--seed", type=int, default=-1, help="seed of the detail pass; -1: random")
    add("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    add("--precision", choices=("auto", "fp16", "bf16", "fp32"), default="auto")
    return parser


def _size(text: str) -> Extent:
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in whole pixels, such as 2048x1536, got {text!r}")
    return Extent(int(match[1]), int(match[2]))


def inputs(source: Path) -> list[Path]:
    """The pictures to upscale: the file, or the pictures of the folder in name order."""
    if source.is_dir():
        return sorted((p for p in source.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES
                       and not p.name.startswith(".")), key=lambda p: p.name.lower())
    if source.is_file():
        return [source]
    raise UsageError(f"--input: {source} does not exist")


def output_name(source: Path, scale: float, size: Extent | None, detail: bool = False) -> str:
    tag = f"{size.width}x{size.height}" if size else f"x{scale_text(scale)}"
    return f"{source.stem}-{tag}{'-detail' if detail else ''}.png"


# The option that sets each field of the detail pass, to name it in messages.
DETAIL_OPTIONS = {"strength": "--detail", "steps": "--steps", "cfg_scale": "--cfg", "sampler": "--sampler",
                  "schedule": "--sampler", "seed": "--seed", "prompt": "--prompt", "negative_prompt": "--negative",
                  "model": "--model"}


def _detail(args) -> DetailSettings | None:
    if args.detail is None:
        return None
    return DetailSettings(args.model, Conditioning(args.prompt, args.negative),
                          Sampling(sampler=args.sampler, schedule="Automatic", steps=args.steps, cfg_scale=args.cfg,
                                   seed=args.seed, strength=args.detail))


def main(argv: list[str]) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        pictures = inputs(args.input)
        detail = _detail(args)
        UpscaleRequest(_probe(), args.scale, args.size, args.upscaler, detail=detail).validated()  # before any work
    except InvalidRequest as error:  # the options are parsed: name the one at fault
        return refused(error, DETAIL_OPTIONS if args.detail is not None else {})
    except (UsageError, SfumatoError) as error:
        return refused(error)
    if not pictures:
        return refused(UsageError(f"there are no pictures in {args.input}"))
    return process(args, pictures, args.out or paths.output_dir() / "upscaled", "upscaled",
                   lambda source: output_name(source, args.scale, args.size, detail is not None),
                   lambda image, parameters: UpscaleRequest(image, args.scale, args.size, args.upscaler, parameters,
                                                            detail=detail))


def refused(error: Exception, options: dict[str, str] | None = None) -> int:
    """Bad input, said in one line before any work: an InvalidRequest names its option (`options` maps a field
    to the option that sets it, else --field); exit code 2."""
    if isinstance(error, InvalidRequest):
        print(f"sfumato: {(options or {}).get(error.field, f'--{error.field}')}: {error.message}", file=sys.stderr)
    else:
        print(f"sfumato: {error}", file=sys.stderr)
    return 2


def process(args, pictures: list[Path], out: Path, done: str, name_for: Callable[[Path], str],
            request_for: Callable[[object, str], UpscaleRequest]) -> int:
    """Run an UpscaleJob (request_for(picture, its parameters)) for each picture, writing out/name_for(picture) with
    the job's parameters and skipping pictures already done; `done` says what was done in the summary ("upscaled").
    Returns the exit code: 0, 1 when a picture failed, 2 for no device, 130 when interrupted."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"sfumato: the output folder {out} cannot be used: {_reason(error)}", file=sys.stderr)
        return 1
    from desktop.core.gallery.metadata import read_image_meta

    progress = _Progress()
    backend = start_backend(args, progress)
    if backend is None:
        return 2
    failed, names = 0, set()
    chosen = settings.load(set_aside=False)
    mark, signing = chosen.mark_ai, credentials.Signing.from_settings(chosen)
    try:
        for number, source in enumerate(pictures, 1):
            name = name_for(source)
            if name in names:  # a.jpg and a.png in one folder
                name = f"{Path(name).stem}-{source.suffix.lstrip('.').lower()}.png"
            names.add(name)
            target = out / name
            label = f"[{number}/{len(pictures)}] {source.name}"
            if target.exists():
                progress.status(f"{label}: already done ({target.name})")
                continue
            progress.status(label)
            try:
                image = load_image(source)
                try:
                    parameters = read_image_meta(source)[0].parameters
                except (OSError, SfumatoError, ValueError):
                    parameters = ""
                result = backend.run(UpscaleJob(request_for(image, parameters)), progress.state)[0]
                progress.end()
                written = save_png(target, result.image, {"parameters": result.request.parameters,
                                                          **marking.chunks(result.request.replace(beside=str(source)),
                                                                           mark)})
            except (Cancelled, KeyboardInterrupt):
                raise
            except SfumatoError as error:
                progress.end()
                print(f"sfumato: {source.name}: {error}", file=sys.stderr)
                failed += 1
                if isinstance(error, UpscalerError):
                    return 1  # the same model would fail for every picture
                continue
            except OSError as error:
                progress.end()
                print(f"sfumato: {source.name}: could not be written to {out}: {_reason(error)}", file=sys.stderr)
                failed += 1
                continue
            if signing is not None and not signing.sign(written, credentials.provenance(
                    result.request.replace(beside=str(source)))):
                print(f"sfumato: {signing.problems[-1]}", file=sys.stderr)  # saved, unsigned
            _print_path(written)
    except (KeyboardInterrupt, Cancelled):
        progress.end()
        print("\nsfumato: interrupted", file=sys.stderr)
        return 130
    finally:
        backend.close()
    if failed:
        print(f"sfumato: {failed} of {len(pictures)} pictures could not be {done}.", file=sys.stderr)
        return 1
    return 0


def _probe():
    import numpy as np

    return np.zeros((1, 1, 3), np.uint8)
