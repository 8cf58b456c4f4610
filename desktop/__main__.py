"""`python -m desktop` / `sfumato`: the app, or `generate` / `upscale` / `restore` / `batch` / `serve ...` (the CLI)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # On Apple GPUs, an operation PyTorch has no Metal kernel for runs on the CPU instead of failing the
    # generation. Read when torch loads, so it is set before anything imports it.
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    if argv[:1] == ["generate"]:
        from desktop.cli import main as cli_main

        return cli_main(argv[1:])
    if argv[:1] == ["grid"]:
        from desktop.cli_grid import main as grid_main

        return grid_main(argv[1:])
    if argv[:1] == ["restore"]:
        from desktop.cli_restore import main as restore_main

        return restore_main(argv[1:])
    if argv[:1] == ["serve"]:
        from desktop.cli_serve import main as serve_main

        return serve_main(argv[1:])
    if argv[:1] == ["batch"]:
        from desktop.cli_batch import main as batch_main

        return batch_main(argv[1:])
    if argv[:1] == ["upscale"]:
        from desktop.cli_upscale import main as upscale_main

        return upscale_main(argv[1:])
    from desktop.app import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
