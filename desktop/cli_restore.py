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

from desktop.cli import _Parser, UsageError
from desktop.cli_upscale import inputs, process
from desktop.core import paths
from desktop.core.errors import InvalidRequest, SfumatoError
from desktop.core.postprocess import DEMO_RESTORER, RESTORE_KINDS, UpscaleRequest


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
    return process(args, pictures, args.out or paths.output_dir() / "restored", "restored",
                   lambda source: f"{source.stem}-{args.kind}.png",
                   lambda image, parameters: request(image, args, parameters))
