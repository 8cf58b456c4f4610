"""`sfumato batch ...`: every picture of a folder through img2img, inpaint, an upscale or a restore, without the window.

    sfumato batch --input DIR --mode img2img|inpaint|upscale|restore [--variations N] [--mask-dir DIR] [--out DIR]
                  [the generate options: --model --prompt --negative --strength --steps --cfg --sampler --seed ...]
                  [--upscaler NAME --scale X | --restore-kind denoise|jpeg|restore]

img2img and inpaint make N variations of each picture (seeds seed, seed+1, ...) at the picture's own size
rounded to 8, named <stem>-00.png, <stem>-01.png, ...; an upscale or a restore makes <stem>.png. Inpaint takes
each picture's mask from --mask-dir by name (cat.jpg <-> cat.png). The outputs, manifest.csv and manifest.json go
to --out (default: <Sfumato's output folder>/batches/<input folder's name>, or <name>-2, ... when that holds
another batch; an --out that holds another batch is refused); the choices are in desktop/core/folder_batch.py.
Run the same batch again to resume: what is done is skipped.

Prints each output's path (stdout), progress and a summary line (stderr). Exits 0 when the batch ran, even
with pictures listed as unreadable or failed in the manifest; 2 with a one-line reason on bad options; 1 when
the model or a write failed; 130 when interrupted (run it again to go on).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from desktop.cli import (OPTIONS, _Parser, _print_path, _Progress, _reason, _values_may_start_with_dash,
                         build_parser as generate_parser, request_from_args, start_backend, UsageError)
from desktop.core import paths, settings
from desktop.core.errors import Cancelled, InvalidRequest, SfumatoError
from desktop.core.folder_batch import MAX_VARIATIONS, MODES, FolderBatchRun, PostSettings
from desktop.core.postprocess import DEMO_UPSCALER, MAX_SCALE, RESTORE_KINDS
from desktop.core.runs import RunContext

# Generate options that a batch does not take: the pictures, masks and sizes come from the folders.
NOT_FOR_BATCH = {"init": "--init", "mask": "--mask", "width": "--width", "height": "--height", "batch": "--batch",
                 "hires_scale": "--hires-scale", "hires_resize": "--hires-resize", "control": "--control",
                 "reference": "--reference"}
BATCH_OPTIONS = {**OPTIONS, "input": "--input", "output": "--out", "mode": "--mode", "variations": "--variations",
                 "mask_dir": "--mask-dir", "scale": "--scale", "upscaler": "--upscaler", "restore": "--restore-kind"}


def build_parser() -> argparse.ArgumentParser:
    # the generate options, the batch's own replacing --mode, --prompt and --out
    parser = _Parser(prog="sfumato batch", parents=[generate_parser()], conflict_handler="resolve", description=(
        "Every picture of a folder through img2img, inpaint, an upscale or a restore, with a manifest."))
    add = parser.add_argument
    add("--input", type=Path, required=True, help="the folder of the pictures (not its subfolders)")
    for action in parser._actions:  # taken from generate, refused here: not listed in --help
        if action.dest in NOT_FOR_BATCH or action.dest.startswith("hires_") or action.dest == "expand":
            action.help = argparse.SUPPRESS
    add("--mode", choices=MODES, required=True)
    add("--variations", type=int, default=1,
        help=f"img2img, inpaint: pictures made of each, seeds seed, seed+1, ... (1 to {MAX_VARIATIONS})")
    add("--mask-dir", type=Path, help="inpaint: the folder of the masks, named as the pictures (white = repaint)")
    add("--prompt", default="", help="img2img, inpaint: the prompt")
    add("--out", type=Path, help="the output folder (default: batches/<input's name> in Sfumato's output folder, "
                                 "or <name>-2, ... when that holds another batch)")
    add("--upscaler", default=DEMO_UPSCALER,
        help="upscale: 'demo', an upscaler file, the name of one in your upscaler folders, or Lanczos / Nearest; "
             "restore: 'demo' or a restorer (a model of scale 1)")
    add("--scale", type=float, default=2.0, help=f"upscale: how many times larger (more than 0, at most {MAX_SCALE:g})")
    add("--restore-kind", choices=[k for k in RESTORE_KINDS if k != "face"], default="restore",
        help="restore: what the restore is for (named in the metadata)")
    return parser


def batch_from_args(args: argparse.Namespace) -> FolderBatchRun:
    """The FolderBatchRun the options describe, checked; UsageError or InvalidRequest when they are wrong."""
    given = [option for name, option in NOT_FOR_BATCH.items() if getattr(args, name) not in (None, [], 1)]
    if given:
        raise UsageError(f"{given[0]} is not a batch option: the pictures, their masks and sizes come from --input "
                         "and --mask-dir")
    base = None
    if args.mode in ("img2img", "inpaint"):
        plain = argparse.Namespace(**{**vars(args), "mode": None, "init": None, "mask": None})
        base = request_from_args(plain)
    post = PostSettings(args.upscaler, args.scale, args.restore_kind)
    run = FolderBatchRun(args.input, args.mode, args.out or args.input, base, post, args.variations, args.mask_dir)
    if args.out is None:  # batches/<input's name>, or <name>-2, ... where another batch is
        run.into_default_folder(paths.output_dir() / "batches")
    return run.check()


def main(argv: list[str]) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(_values_may_start_with_dash(parser, argv))
        run = batch_from_args(args)
    except InvalidRequest as error:
        print(f"sfumato: {BATCH_OPTIONS.get(error.field, '--' + error.field)}: {error.message}", file=sys.stderr)
        return 2
    except (UsageError, SfumatoError) as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return 2
    progress = _Progress()
    backend = start_backend(args, progress)
    if backend is None:
        return 2
    run.wrote = _print_path
    context = RunContext(settings.load(set_aside=False), _not_here, _not_here, progress.status)
    try:
        outcome = run.run(backend, progress.state, context)
    except (KeyboardInterrupt, Cancelled):
        progress.end()
        print(f"\nsfumato: interrupted; run it again to go on where it stopped ({run.output}).", file=sys.stderr)
        return 130
    except SfumatoError as error:
        progress.end()
        print(f"sfumato: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        progress.end()
        print(f"sfumato: the batch stopped: {_reason(error)} ({run.output}).", file=sys.stderr)
        return 1
    finally:
        backend.close()
    progress.end()
    print(f"sfumato: {outcome.summary}", file=sys.stderr)
    return 0


def _not_here(*_args):
    raise AssertionError("a folder batch writes its own files")
