"""Fast generation without a GPU (issue 22): OpenVINO against PyTorch on the CPU, few steps against many.

Each figure has its baseline measured in the same run on the same machine. Parts (SFUMATO_BENCH_FAST_PARTS, a
comma list, default all):
- steps: UNet step (CFG: a batch of 2 into the UNet; and a batch of 1) and VAE decode at 256 and 512 on a
  full-size SD1.5 with random weights (bench_engine's model, from resources/configs/sd1): Sfumato's PyTorch setup
  (bf16 and channels-last on a CPU that multiplies bf16 natively, else fp32) and bare OpenVINO (the model converted
  here, bf16 inference, static shapes), against PyTorch fp32 (diffusers' default); OpenVINO's relative error
  against fp32 beside PyTorch bf16's.
- pictures: time to a 512x512 picture through generate.run: 20 steps of DPM++ 2M at CFG 7 decoded by the full
  VAE, against 4 LCM steps at CFG 1 decoded by TAESD, on each runtime (OpenVINO through Sfumato's runtime,
  desktop/engine/openvino_runtime.py). Unless SFUMATO_BENCH_FULL_PICTURE=1 the 20-step time is extrapolated from
  runs of 2 and 6 steps (the figure's name says so); the step those runs give is Sfumato's whole loop per step
  (scheduler, previews, the runtime's hand-over), compared with the bare UNet step of "steps" on the same runtime
  (goal on OpenVINO: within 1.05x).
- first-use: converting the UNet and the VAE decoder with bare convert_model (seconds and peak memory, in a fresh
  process), the files' size and loading them again (read, compile for 512x512 CFG), against loading the PyTorch
  model; and the same through Sfumato's runtime: the first OpenVINO picture of a model (it converts into its
  cache) and the first after a restart (it reads the cache), each beyond a second picture, and the cache's size.

Both runtimes use the threads they choose by default (one per core). A part whose dependency is missing (the
openvino package, Sfumato's OpenVINO runtime) prints why on stderr and reports nothing; each figure is also
printed on stderr as it is measured. SFUMATO_BENCH_QUICK=1 runs it all on the tiny demo model at toy sizes, to
check the benchmark (its figures mean nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import Figure, best_of, peak_rss_mib, quick, skipped

BENCH = "bench_fast"
ROOT = Path(__file__).resolve().parents[2]
SIZES = (64, 128) if quick() else (256, 512)
TEXT_TOKENS = 77


PARTS = ("steps", "pictures", "first-use")  # SFUMATO_BENCH_FAST_PARTS=steps,pictures: only those


def run() -> list[Figure]:
    # A fresh home for the run, never the person's: the first use of OpenVINO starts from an empty cache, and the
    # cache (1.7 GB for SD1.5) goes with it at the end.
    with tempfile.TemporaryDirectory(prefix="sfumato-bench-fast-") as home:
        before = os.environ.get("SFUMATO_HOME")
        os.environ["SFUMATO_HOME"] = home
        try:
            return _run()
        finally:
            if before is None:
                os.environ.pop("SFUMATO_HOME", None)
            else:
                os.environ["SFUMATO_HOME"] = before


def _run() -> list[Figure]:
    parts = os.environ.get("SFUMATO_BENCH_FAST_PARTS", ",".join(PARTS)).split(",")
    model = _model()
    figures: list[Figure] = []
    bare: dict[str, tuple[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sfumato-bench-openvino-") as converted:
        if "first-use" in parts:
            figures += _part("OpenVINO first use", first_use, model, Path(converted))
            figures += _part("first use of Sfumato's OpenVINO runtime", sfumato_first_use, model)
        if "steps" in parts:
            measured = _part("steps and decodes", steps_and_decodes, model, Path(converted))
            figures += measured[0] if measured else []
            bare = measured[1] if measured else {}
    if "pictures" in parts:
        figures += _part("time to a picture", pictures, model, bare)
    return figures


def _part(name: str, measure, *args):
    """One part's figures, each also printed on stderr as it comes (a run stopped half-way keeps them); a part
    that fails (another part of Sfumato half-built) prints why and reports nothing, so the other parts still run."""
    try:
        out = measure(*args)
    except Exception as error:  # noqa: BLE001 - reported, not hidden: the traceback goes to stderr
        import traceback

        traceback.print_exc()
        skipped(BENCH, f"{name} failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        return []
    for figure in out[0] if isinstance(out, tuple) else out:
        print(f"{BENCH}: {figure.name}: {figure.value:.4g} {figure.unit} against {figure.baseline_value:.4g} "
              f"({figure.baseline}), ratio {figure.ratio:.3g}", file=sys.stderr, flush=True)
    return out


def _model() -> Path:
    """The diffusers folder measured: bench_engine's full-size random SD1.5, or the tiny demo model when quick."""
    if quick():
        from desktop.engine import tiny

        return tiny.build(Path(os.environ["SFUMATO_HOME"]) / "tiny", "sd1").folder
    from .bench_engine import full_size_model

    return full_size_model()


def _openvino():
    """The openvino module with its converter's telemetry off (runtime_probe.import_openvino), or None."""
    from desktop.engine import runtime_probe

    try:
        return runtime_probe.import_openvino()
    except ImportError:
        return None


def _sfumato_openvino() -> str:
    """Why Sfumato's own OpenVINO runtime cannot be measured here, or ""."""
    import importlib.util
    import inspect

    from desktop.engine.models import ModelManager

    if _openvino() is None:
        return "the openvino package is not installed"
    if importlib.util.find_spec("desktop.engine.openvino_runtime") is None:
        return "Sfumato's OpenVINO runtime (desktop/engine/openvino_runtime.py) is not there yet"
    if "runtime" not in inspect.signature(ModelManager).parameters:
        return "ModelManager takes no runtime yet"
    return ""


def _load_torch(model: Path):
    """The model's UNet and VAE in fp32 (diffusers' default on the CPU)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model / "unet", torch_dtype=torch.float32).eval()
    vae = AutoencoderKL.from_pretrained(model / "vae", torch_dtype=torch.float32).eval()
    return unet, vae


def _inputs(unet, size: int, batch: int, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    latent = size // 8
    sample = torch.randn(batch, unet.config.in_channels, latent, latent, generator=generator)
    text = torch.randn(batch, TEXT_TOKENS, unet.config.cross_attention_dim, generator=generator)
    return sample, torch.tensor(500.0), text


# -- first use: conversion and the cached load, each in a fresh process -------------------------------------------


def first_use(model: Path, converted: Path) -> list[Figure]:
    if _openvino() is None:
        return skipped(BENCH, "OpenVINO first-use cost: the openvino package is not installed")
    loaded = _child("load", model)
    convert = _converted(model, converted)
    reload = _child("reload", model, converted)
    size = sum(f.stat().st_size for f in converted.glob("*.*") if f.suffix in (".xml", ".bin")) / 2**20
    on_disk = sum(f.stat().st_size for part in ("unet", "vae") for f in (model / part).iterdir()) / 2**20
    return [
        Figure("OpenVINO conversion of the UNet and VAE decoder (bare convert_model)", convert["seconds"], "s",
               "loading them with PyTorch (fp32)", loaded["seconds"]),
        Figure("peak memory converting them (fresh process)", convert["peak_mib"], "MiB",
               "loading them with PyTorch (fp32)", loaded["peak_mib"]),
        Figure("converted UNet and VAE decoder on disk (fp16 weights)", size, "MiB",
               "the model's UNet and VAE (fp16 safetensors)", on_disk),
        Figure(f"loading the converted ones again (read, compile for {SIZES[-1]}x{SIZES[-1]} CFG)",
               reload["seconds"], "s", "loading them with PyTorch (fp32)", loaded["seconds"]),
    ]


def _converted(model: Path, converted: Path) -> dict:
    """The bare conversion of the model into `converted` (once a run), and what it took."""
    done = converted / "conversion.json"
    if not done.is_file():
        done.write_text(json.dumps(_child("convert", model, converted)))
    return json.loads(done.read_text())


def _child(task: str, model: Path, converted: Path | None = None) -> dict:
    """Run `child(task, ...)` in a fresh Python: its peak memory is its own."""
    code = f"from tests.bench.bench_fast import child; child({task!r}, {str(model)!r}, {str(converted)!r})"
    env = {**os.environ, "SFUMATO_BENCH_QUICK": "1" if quick() else "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode:
        raise RuntimeError(f"{task} failed in its own process:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(task: str, model: str, converted: str) -> None:
    """One first-use measurement (see _child); prints its figures as JSON."""
    import diffusers  # noqa: F401 - the imports are not part of what is measured
    import torch  # noqa: F401

    _openvino()

    if task in ("pytorch", "openvino"):
        return _first_pictures(task, model)
    start = time.perf_counter()
    if task == "reload":
        _compiled(Path(converted), SIZES[-1])
    else:
        unet, vae = _load_torch(Path(model))
        if task == "convert":
            start = time.perf_counter()
            _convert(unet, vae, Path(converted))
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": peak_rss_mib()}))


def _convert(unet, vae, folder: Path) -> None:
    """The UNet and the VAE decoder as OpenVINO IR with fp16 weights (shapes left dynamic)."""
    import torch

    ov = _openvino()

    class Denoiser(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, latents):
            return self.vae.decode(latents, return_dict=False)[0]

    with torch.no_grad():
        ov.save_model(ov.convert_model(Denoiser().eval(), example_input=_inputs(unet, SIZES[0], 2)),
                      str(folder / "unet.xml"), compress_to_fp16=True)
        latents = torch.randn(1, vae.config.latent_channels, SIZES[0] // 8, SIZES[0] // 8)
        ov.save_model(ov.convert_model(Decoder().eval(), example_input=(latents,)), str(folder / "vae_decoder.xml"),
                      compress_to_fp16=True)


def _compiled(folder: Path, size: int, batch: int = 2):
    """The converted UNet and VAE decoder compiled for one size (the UNet for `batch`), bf16 inference."""
    ov = _openvino()
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
    unet = core.read_model(folder / "unet.xml")
    latent = size // 8
    channels = unet.inputs[0].get_partial_shape()[1]
    text = unet.inputs[2].get_partial_shape()[2]
    unet.reshape({0: [batch, channels, latent, latent], 1: [], 2: [batch, TEXT_TOKENS, text]})
    decoder = core.read_model(folder / "vae_decoder.xml")
    decoder.reshape({0: [1, decoder.inputs[0].get_partial_shape()[1], latent, latent]})
    return core.compile_model(unet, "CPU", config), core.compile_model(decoder, "CPU", config)


def sfumato_first_use(model: Path) -> list[Figure]:
    """What the first OpenVINO picture of a model costs with Sfumato's runtime (its conversion to the disk cache,
    then compiling), and a later one that finds the cache, each in a fresh process; against PyTorch."""
    why = _sfumato_openvino()
    if why:
        return skipped(BENCH, f"first use of Sfumato's OpenVINO runtime: {why}")
    from desktop.engine import openvino_convert

    pytorch = _child("pytorch", model)
    fresh = _child("openvino", model)
    cached = _child("openvino", model)
    size = sum(f.stat().st_size for f in openvino_convert.cache_root().rglob("*") if f.is_file()) / 2**20
    on_disk = sum(f.stat().st_size for part in ("unet", "vae") for f in (model / part).iterdir()) / 2**20
    side = SIZES[-1]
    return [
        Figure(f"first OpenVINO picture of a model, beyond a later one (Sfumato converts, compiles {side}x{side})",
               fresh["first_s"] - fresh["again_s"], "s", "loading the model (PyTorch)", fresh["load_s"]),
        Figure(f"peak memory of that first OpenVINO picture (fresh process, {side}x{side}, 1 step)",
               fresh["peak_mib"], "MiB", "the same picture on PyTorch", pytorch["peak_mib"]),
        Figure("Sfumato's OpenVINO cache of the model on disk", size, "MiB",
               "the model's UNet and VAE (fp16 safetensors)", on_disk),
        Figure("first OpenVINO picture, converted before (reads the cache, compiles), beyond a later one",
               cached["first_s"] - cached["again_s"], "s", "loading the model (PyTorch)", cached["load_s"]),
    ]


def _first_pictures(runtime: str, model: str) -> None:
    """In a fresh process: load the model, make the same one-step picture twice on `runtime`; print the seconds."""
    from desktop.core.progress import TaskState
    from desktop.engine import devices, generate
    from desktop.engine.models import ModelManager

    manager = ModelManager(devices.choose("cpu"), runtime=runtime)
    start = time.perf_counter()
    manager.load(model)
    load = time.perf_counter() - start
    request = _picture_request(model, SIZES[-1], 1, "DPM++ 2M", 7.0)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        generate.run(request, TaskState(), manager)
        times.append(time.perf_counter() - start)
    print(json.dumps({"load_s": load, "first_s": times[0], "again_s": times[1], "peak_mib": peak_rss_mib()}))


# -- UNet steps and VAE decodes, side by side ---------------------------------------------------------------------


def steps_and_decodes(model: Path, converted: Path) -> tuple[list[Figure], dict[str, tuple[str, float]]]:
    """The figures, and the bare UNet step at the largest size with CFG on each runtime (name, seconds)."""
    import torch

    from desktop.engine import devices

    unet, vae = _load_torch(model)
    cases = [(size, batch) for size in SIZES for batch in (2, 1)]
    inputs = {case: _inputs(unet, *case) for case in cases}
    latents = {size: torch.randn(1, vae.config.latent_channels, size // 8, size // 8,
                                 generator=torch.Generator().manual_seed(1)) for size in SIZES}

    def measure(dtype, channels_last: bool) -> tuple[dict, dict]:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        unet.to(dtype).to(memory_format=fmt)
        vae.to(dtype).to(memory_format=fmt)
        seconds, outputs = {}, {}
        with torch.inference_mode():
            for case in cases:
                sample, t, text = (tensor.to(dtype) if tensor.dim() else tensor for tensor in inputs[case])
                step = lambda: unet(sample, t, text, return_dict=False)[0]  # noqa: E731
                outputs[case] = step().float()  # warm-up: oneDNN picks its kernels
                seconds[case] = best_of(step, repeat=_repeat(case[0]))
            for size in SIZES:
                z = latents[size].to(dtype)
                decode = lambda: vae.decode(z, return_dict=False)[0]  # noqa: E731
                decode()
                seconds[size] = best_of(decode, repeat=_repeat(size))
        return seconds, outputs

    fp32, reference = measure(torch.float32, False)
    dtype = devices.choose("cpu").dtype
    ours, ours_out = measure(dtype, dtype != torch.float32)
    setup = f"Sfumato's PyTorch ({str(dtype)[6:]}{', channels-last' if dtype != torch.float32 else ''})"
    del unet, vae
    openvino, openvino_out = {}, {}
    if _openvino() is None:
        skipped(BENCH, "OpenVINO steps and decodes: the openvino package is not installed")
    else:
        _converted(model, converted)
        openvino, openvino_out = _measure_openvino(converted, inputs, latents)
    figures = []
    for case in [*cases, *SIZES]:
        what = f"UNet step {_case(case)}" if isinstance(case, tuple) else f"VAE decode {case}x{case}"
        figures.append(Figure(f"{what}, {setup}", ours[case], "s", "PyTorch fp32", fp32[case]))
        if case in openvino:
            figures.append(Figure(f"{what}, OpenVINO (bf16)", openvino[case], "s", "PyTorch fp32", fp32[case]))
    worst = SIZES[-1], 2
    if worst in openvino_out:
        figures.append(Figure(f"OpenVINO UNet output {_case(worst)}, relative error against fp32",
                              _relative_error(openvino_out[worst], reference[worst]) * 100, "%",
                              f"{setup}'s relative error", _relative_error(ours_out[worst], reference[worst]) * 100))
    bare = {"pytorch": (f"bare UNet step, {setup}", ours[worst])}
    if worst in openvino:
        bare["openvino"] = ("bare OpenVINO UNet step (compiled alone)", openvino[worst])
    return figures, bare


def _measure_openvino(converted: Path, inputs: dict, latents: dict) -> tuple[dict, dict]:
    """Seconds per bare compiled UNet step (each size and batch) and VAE decode, and the UNet's outputs."""
    import torch

    seconds, outputs = {}, {}
    for size, batch in inputs:
        compiled_unet, compiled_decoder = _compiled(converted, size, batch)
        request = compiled_unet.create_infer_request()
        arrays = [tensor.numpy() for tensor in inputs[size, batch]]
        outputs[size, batch] = torch.from_numpy(request.infer(arrays)[0].copy())
        seconds[size, batch] = best_of(lambda: request.infer(arrays), repeat=_repeat(size))
        if batch == 1:
            decoder = compiled_decoder.create_infer_request()
            z = [latents[size].numpy()]
            decoder.infer(z)
            seconds[size] = best_of(lambda: decoder.infer(z), repeat=_repeat(size))
    return seconds, outputs


def _case(case: tuple[int, int]) -> str:
    size, batch = case
    return f"{size}x{size} {'CFG (batch 2)' if batch == 2 else 'batch 1'}"


def _repeat(size: int) -> int:
    return 3 if size <= 256 else 2


def _relative_error(output, reference) -> float:
    return float((output.float() - reference).norm() / reference.norm())


# -- time to a picture through generate.run -----------------------------------------------------------------------


def pictures(model: Path, bare: dict[str, tuple[str, float]]) -> list[Figure]:
    """20 steps of DPM++ 2M at CFG 7 + the full VAE against 4 LCM steps at CFG 1 + TAESD, on each runtime; and
    Sfumato's step on each runtime against the bare UNet step of steps_and_decodes."""
    from desktop.core.progress import TaskState
    from desktop.engine import devices, generate
    from desktop.engine.models import ModelManager

    if not quick():
        _random_taesd()
    side, many = SIZES[-1], 20
    why = _sfumato_openvino()
    if why:
        skipped(BENCH, f"pictures on Sfumato's OpenVINO runtime: {why}")
    figures, slow, fast = [], {}, {}
    for runtime in ("pytorch",) if why else ("pytorch", "openvino"):
        manager = ModelManager(devices.choose("cpu"), runtime=runtime) if runtime != "pytorch" else \
            ModelManager(devices.choose("cpu"))
        manager.load(str(model))

        def picture(steps: int, sampler: str = "DPM++ 2M", cfg: float = 7.0, decoder: str = "full"):
            request = _picture_request(str(model), side, steps, sampler, cfg, decoder)
            results = []
            seconds = best_of(lambda: results.append(generate.run(request, TaskState(), manager)), repeat=1)
            return seconds, dict(results[-1][0].params)

        picture(1)  # warm-up: the prompt encoded, oneDNN's kernels or OpenVINO's compiled shapes
        if os.environ.get("SFUMATO_BENCH_FULL_PICTURE") == "1":
            slow[runtime] = picture(many)[0]
            per_step = None
            how = ""
        else:  # a fixed part (prompt, VAE) and a part per step, from two runs
            two, six = picture(2)[0], picture(6)[0]
            per_step = (six - two) / 4
            slow[runtime] = two + (many - 2) * per_step
            how = ", extrapolated from 2 and 6 steps"
        picture(1, "LCM", 1.0, "tiny")  # warm-up: no CFG is a batch of 1 into the UNet, another compiled shape
        fast[runtime], params = picture(4, "LCM", 1.0, "tiny")
        decoder = "TAESD" if params.get("Decoder") == "TAESD" else "full VAE: no TAESD decode yet"
        name = "OpenVINO" if runtime == "openvino" else "PyTorch"
        slow_name = f"20 steps DPM++ 2M CFG 7 + full VAE, {name}{how}"
        figures.append(Figure(f"{side}x{side} picture, 4 steps LCM CFG 1 + {decoder}, {name}", fast[runtime], "s",
                              slow_name, slow[runtime]))
        if per_step is not None:
            label, bare_step = bare.get(runtime, ("", 0.0))
            if bare_step:
                figures.append(Figure(f"Sfumato's step on {name}, {side}x{side} CFG (from 2- and 6-step runs)",
                                      per_step, "s", label, bare_step))
        manager.unload()
        del manager
    if "openvino" in slow:
        figures.append(Figure(f"{side}x{side} picture, 20 steps DPM++ 2M CFG 7, OpenVINO{how}", slow["openvino"],
                              "s", "the same on PyTorch", slow["pytorch"]))
        figures.append(Figure(f"{side}x{side} picture, 4 steps LCM CFG 1 + TAESD, OpenVINO", fast["openvino"], "s",
                              "the same on PyTorch", fast["pytorch"]))
    return figures


def _picture_request(model: str, side: int, steps: int, sampler: str, cfg: float, decoder: str = "full"):
    from tests.support.requests import make_request

    from .bench_engine import PROMPT

    return make_request(prompt=PROMPT, model=model, width=side, height=side, steps=steps, seed=1, sampler=sampler,
                        schedule="Automatic", cfg_scale=cfg, decoder=decoder)


def _random_taesd() -> None:
    """A TAESD with random weights in models/taesd of the bench's home (AutoencoderTiny's defaults are TAESD's
    config), for the full-size random model; the tiny demo model carries its own."""
    from desktop.core import paths

    folder = paths.models_dir() / "taesd"
    if (folder / "config.json").is_file():
        return
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny().save_pretrained(folder)
