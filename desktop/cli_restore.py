"""`sfumato restore ...`: denoise, de-JPEG or restore pictures with a restorer model, without the window.

    sfumato restore --input IMG|DIR --kind denoise|jpeg|restore [--model demo|NAME|PATH] [--out DIR]

A restorer is a spandrel model of scale 1 (SCUNet, NAFNet, DRUNet, FBCNN, DnCNN, ...) from a file, the upscaler
folders or ``<models folder>/restorers``; "demo" is the built-in tiny random-weight one. It runs like
`sfumato upscale` at scale 1 (desktop/cli_upscale.py): a folder input processes every picture in it, skipping
those whose result ``<out>/<name>-<kind>.png`` exists; each result has the source's parameters with
``Postprocess restore: <restorer>`` appended. Exits 0 when every picture was done or skipped, 2 with a one-line
reason on bad input, 1 when a picture failed, 130 when interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from desktop.cli import _Parser, _print_path, _Progress, _reason, UsageError
from desktop.cli_upscale import inputs
from desktop.core import paths, settings
from desktop.core.backend import UpscaleJob
from desktop.core.errors import Cancelled, InvalidRequest, SfumatoError
from desktop.core.imageio import load_image, save_png
from desktop.core.postprocess import DEMO_RESTORER, RESTORE_KINDS, UpscaleRequest, UpscalerError


def build_parser():
    parser = _Parser(prog="sfumato restore", description="Denoise, de-JPEG or restore pictures with a restorer model.")
    add = parser.add_argument
    add("--input", type=Path, required=True, help="a picture, or a folder: every picture in it")
    add("--kind", choices=RESTORE_KINDS, default="restore", help="what the restore is for (named in the result)")
    add("--model", default="demo",
        help="'demo', a restorer file (.safetensors/.pth, a model of scale 1), or the name of one in your folders")
    add("--out", type=Path, help="output folder (default: the 'restored' folder in Sfumato's output folder)")
    add("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    add("--precision", choices=("auto", "fp16", "bf16", "fp32"), default="auto")
    return parser


def request(image, args, parameters: str = "") -> UpscaleRequest:
    model = DEMO_RESTORER if args.model == "demo" else args.model
    return UpscaleRequest(image, 1.0, upscaler=model, parameters=parameters, restore=args.kind)


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        pictures = inputs(args.input)
        import numpy as np

        request(np.zeros((1, 1, 3), np.uint8), args).validated()  # bad options before any work
    except InvalidRequest as error:
        print(f"sfumato: --{error.field}: {error.message}", file=sys.stderr)
        return 2
    except (UsageError, SfumatoError) as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return 2
    if not pictures:
        print(f"sfumato: there are no pictures in {args.input}", file=sys.stderr)
        return 2
    out = args.out or paths.output_dir() / "restored"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"sfumato: the output folder {out} cannot be used: {_reason(error)}", file=sys.stderr)
        return 1
    from desktop.core.gallery.metadata import read_image_meta
    from desktop.engine.local import LocalBackend

    progress = _Progress()
    backend = LocalBackend(args.device, args.precision, settings.load(set_aside=False).models_folders)
    try:
        backend.start(progress.state)
    except ValueError as error:
        print(f"sfumato: {error}", file=sys.stderr)
        return 2
    failed, names = 0, set()
    try:
        for number, source in enumerate(pictures, 1):
            name = f"{source.stem}-{args.kind}.png"
            if name in names:  # a.jpg and a.png in one folder
                name = f"{source.stem}-{args.kind}-{source.suffix.lstrip('.').lower()}.png"
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
                result = backend.run(UpscaleJob(request(image, args, parameters)), progress.state)[0]
                progress.end()
                written = save_png(target, result.image, {"parameters": result.request.parameters})
            except (Cancelled, KeyboardInterrupt):
                raise
            except SfumatoError as error:
                progress.end()
                print(f"sfumato: {source.name}: {error}", file=sys.stderr)
                failed += 1
                if isinstance(error, UpscalerError):
                    return 1  # the same restorer would fail for every picture
                continue
            except OSError as error:
                progress.end()
                print(f"sfumato: {source.name}: could not be written to {out}: {_reason(error)}", file=sys.stderr)
                failed += 1
                continue
            _print_path(written)
    except (KeyboardInterrupt, Cancelled):
        progress.end()
        print("\nsfumato: interrupted", file=sys.stderr)
        return 130
    finally:
        backend.close()
    if failed:
        print(f"sfumato: {failed} of {len(pictures)} pictures could not be restored.", file=sys.stderr)
        return 1
    return 0
