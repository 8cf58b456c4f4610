"""`sfumato restore ...`: denoise, de-JPEG, restore or fix the faces of pictures, without the window.

    sfumato restore --input IMG|DIR --kind denoise|jpeg|restore [--model demo|NAME|PATH] [--out DIR]
    sfumato restore --input IMG|DIR --kind face [--model demo|NAME|PATH|none] [--strength F] [--mask PNG]
                    [--detailer STRENGTH --detail-model M --prompt TEXT [--negative TEXT] [--seed N]]

--kind face finds the faces (OpenCV's bundled detector, or the white parts of --mask, one face per part),
restores each with a face restorer (GFPGAN, RestoreFormer, CodeFormer; "demo" is a tiny random-weight one,
"none" for the detailer alone) shown at --strength over the original (A1111's visibility, 0..1), and with
--detailer repaints it with a model and prompt at that strength (0.4 as ADetailer). Its metadata appends
``Face restoration: <restorer>`` and the detailer's ADetailer keys; a picture with no face is written unchanged.

A restorer is a spandrel model of scale 1 (SCUNet, NAFNet, DRUNet, FBCNN, DnCNN, ...) from a file, the upscaler
folders or ``<models folder>/restorers``; "demo" is the built-in tiny random-weight one. It runs like
`sfumato upscale` at scale 1 (desktop/cli_upscale.py): a folder input processes every picture in it, skipping
those whose result ``<out>/<name>-<kind>.png`` exists; each result has the source's parameters with
``Postprocess restore: <restorer>`` appended. Exits 0 when every picture was done or skipped, 2 with a one-line
reason on bad input, 1 when a picture failed, 130 when interrupted.
"""

from __future__ import annotations

from pathlib import Path

from desktop.cli import _Parser, UsageError
from desktop.cli_upscale import inputs, process, refused
from desktop.core import paths
from desktop.core.errors import InvalidRequest, SfumatoError
from desktop.core.faces import DEMO_FACE_RESTORER, DETAILER_STRENGTH, FACE, FaceSettings
from desktop.core.postprocess import DEMO_RESTORER, RESTORE_KINDS, DetailSettings, UpscaleRequest
from desktop.core.request import Conditioning, Sampling

FACE_OPTIONS = {"visibility": "--strength", "faces": "--model", "strength": "--detailer", "model": "--detail-model",
                "prompt": "--prompt", "negative_prompt": "--negative", "seed": "--seed", "mask": "--mask"}


def build_parser():
    parser = _Parser(prog="sfumato restore", description="Denoise, de-JPEG or restore pictures, or fix their faces.")
    add = parser.add_argument
    add("--input", type=Path, required=True, help="a picture, or a folder: every picture in it")
    add("--kind", choices=RESTORE_KINDS, default="restore", help="what the restore is for (named in the result)")
    add("--model", default="demo",
        help="'demo', a restorer file (.safetensors/.pth, a model of scale 1), or the name of one in your folders; "
             "for --kind face a face restorer (GFPGAN, RestoreFormer, ...), or 'none' with --detailer")
    add("--strength", type=float, default=1.0, help="--kind face: how much the restored face shows (0..1, default 1)")
    add("--mask", type=Path, help="--kind face: a picture of the same size whose white parts are the faces to fix")
    add("--detailer", type=float, metavar="STRENGTH", nargs="?", const=DETAILER_STRENGTH,
        help=f"--kind face: repaint each face with --detail-model and --prompt at this strength ({DETAILER_STRENGTH})")
    add("--detail-model", default="demo",
        help="the detailer's model: a .safetensors file, a diffusers folder or 'demo'")
    add("--prompt", default="", help="the detailer's prompt")
    add("--negative", default="", help="the detailer's negative prompt")
    add("--steps", type=int, default=20, help="the detailer's schedule (it runs steps x strength of them)")
    add("--seed", type=int, default=-1, help="the detailer's seed; -1: random")
    add("--out", type=Path, help="output folder (default: the 'restored' folder in Sfumato's output folder)")
    add("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto")
    add("--precision", choices=("auto", "fp16", "bf16", "fp32"), default="auto")
    return parser


def request(image, args, parameters: str = "", mask=None) -> UpscaleRequest:
    if args.kind == FACE:
        return UpscaleRequest(image, 1.0, parameters=parameters, restore=FACE, faces=face_settings(args, mask))
    model = DEMO_RESTORER if args.model == "demo" else args.model
    return UpscaleRequest(image, 1.0, upscaler=model, parameters=parameters, restore=args.kind)


def face_settings(args, mask=None) -> FaceSettings:
    restorer = {"demo": DEMO_FACE_RESTORER, "none": ""}.get(args.model, args.model)
    detailer = None
    if args.detailer is not None:
        detailer = DetailSettings(args.detail_model, Conditioning(args.prompt, args.negative),
                                  Sampling(sampler="Euler a", schedule="Automatic", steps=args.steps, seed=args.seed,
                                           strength=args.detailer))
    return FaceSettings(restorer=restorer, visibility=args.strength, detailer=detailer, mask=mask)


def read_mask(path: Path):
    """HxW bool: the white (or, with transparency, the opaque) parts of the mask picture."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as picture:
            picture.load()
            if "A" in picture.getbands() and picture.getextrema()[-1][0] < 255:
                return np.asarray(picture.getchannel("A")) > 127
            return np.asarray(picture.convert("L")) > 127
    except (OSError, ValueError) as error:
        raise UsageError(f"--mask: {path.name} could not be read as a picture ({error})") from None


def _for_picture(image, args, parameters: str, mask):
    if mask is not None and mask.shape != image.shape[:2]:
        raise InvalidRequest("mask", f"the mask is {mask.shape[1]}x{mask.shape[0]} pixels and the picture "
                                     f"{image.shape[1]}x{image.shape[0]}; paint it at the picture's size.")
    return request(image, args, parameters, mask)


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
        pictures = inputs(args.input)
        import numpy as np

        if args.kind != FACE and (args.mask or args.detailer is not None):
            raise UsageError("--mask and --detailer are for --kind face")
        mask = read_mask(args.mask) if args.mask else None
        if mask is not None and not mask.any():
            raise UsageError(f"--mask: {args.mask.name} is empty (it has no white part); paint each face white on it")
        request(np.zeros((1, 1, 3), np.uint8), args).validated()  # bad options before any work
    except InvalidRequest as error:  # the options are parsed: name the one at fault
        return refused(error, FACE_OPTIONS if args.kind == FACE else {})
    except (UsageError, SfumatoError) as error:
        return refused(error)
    if not pictures:
        return refused(UsageError(f"there are no pictures in {args.input}"))
    return process(args, pictures, args.out or paths.output_dir() / "restored", "restored",
                   lambda source: f"{source.stem}-{args.kind}.png",
                   lambda image, parameters: _for_picture(image, args, parameters, mask))
