"""An X/Y/Z plot against the same pictures made one by one, on the CPU with the tiny SD 1.x model.

- a 3x3 plot (Steps 2,3,4 x CFG Scale 3,5,7, 64x64) as a Run on one LocalBackend: the model loads once, every cell
  and the grid are saved; the baseline makes the same 9 pictures as 9 separate runs that each start a backend and
  load the model (what 9 `sfumato generate` calls do, less the interpreter's start), saving each picture;
- the model loads of each: the plot's backend.load calls against the baseline's 9.

    python -m tests.bench plot
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from .common import Figure


def run() -> list[Figure]:
    from desktop.core.backend import GenerationJob
    from desktop.core.imageio import save_png
    from desktop.core.outputs import save_result
    from desktop.core.progress import TaskState
    from desktop.core.runs import RunContext
    from desktop.core.settings import Settings
    from desktop.core.xyz import PlotRun, parse_axis
    from desktop.engine import tiny
    from desktop.engine.local import LocalBackend
    from tests.support.requests import make_request

    work = Path(tempfile.mkdtemp(prefix="sfumato-bench-plot-"))
    os.environ.setdefault("SFUMATO_HOME", str(work / "home"))
    try:
        model = str(tiny.build(work, "sd1").folder)
        base = make_request(model=model, prompt="a lighthouse at dusk", width=64, height=64, seed=5)
        plot = PlotRun(base, parse_axis("Steps", "2,3,4"), parse_axis("CFG Scale", "3,5,7"))
        cells = plot.cells()

        def save(folder: Path):
            def keep(results, loaded):
                return [(r.image, r.seed, save_result(folder, r.image, r.request, r.seed, loaded.name, loaded.hash,
                                                      r.params)) for r in results]
            return keep

        def add_picture(folder: Path):
            return lambda name, image, parameters, extra: save_png(folder / name, image,
                                                                   {"parameters": parameters, **extra})

        class Counting(LocalBackend):
            loads = 0

            def load(self, ref, state):
                Counting.loads += 1
                return super().load(ref, state)

        def separate() -> None:
            folder = work / "separate"
            for cell in cells:
                backend = Counting("cpu")
                backend.start(TaskState())
                loaded = backend.load(cell.request.model, TaskState())
                results = backend.run(GenerationJob(cell.request.resolved()), TaskState())
                save(folder)(results, loaded)
                backend.close()

        def plotted() -> None:
            folder = work / "plot"
            backend = Counting("cpu")
            backend.start(TaskState())
            plot.run(backend, TaskState(), RunContext(Settings(output_folder=str(folder)), save(folder),
                                                      add_picture(folder)))
            backend.close()

        plotted()  # warm-up: torch's first run, the tokenizer files, the file cache
        Counting.loads = 0
        start = time.perf_counter()
        separate()
        separate_s, separate_loads = time.perf_counter() - start, Counting.loads
        Counting.loads = 0
        start = time.perf_counter()
        plotted()
        plot_s, plot_loads = time.perf_counter() - start, Counting.loads
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return [
        Figure("3x3 X/Y/Z plot, tiny SD1 64x64 on the CPU (9 cells + the grid)", plot_s, "s",
               "the 9 pictures as 9 separate runs, each loading the model", separate_s),
        Figure("model loads in that plot", plot_loads, "loads", "the 9 separate runs' loads", separate_loads),
    ]
