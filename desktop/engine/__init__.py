"""torch + diffusers. Imported lazily: only by the worker thread, the CLI, tests and benchmarks."""

import importlib.util
import sys


def _hide_unusable_torchvision() -> None:
    """Mark a torchvision that cannot be imported as absent, before transformers looks for it.

    pip takes torchvision from PyPI, built for CUDA; beside a CPU-only torch (or another torch version) its
    import fails ("operator torchvision::nms does not exist"), and transformers, which imports it whenever it is
    installed, then cannot load CLIP. Marked absent, transformers uses its Pillow image processors, as without
    torchvision, and upscalers run without it (upscale.import_spandrel).
    """
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - RuntimeError or ImportError, depending on how the builds differ
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"] = None


_hide_unusable_torchvision()
