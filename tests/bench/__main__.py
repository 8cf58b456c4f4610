"""Run every benchmark under tests/bench and print one table; write the figures as JSON.

    python -m tests.bench                 # all of them
    python -m tests.bench canvas          # only bench_canvas.py
    python -m tests.bench --json out.json

Each bench_*.py module has `run() -> list[Figure]`. A figure carries its
baseline, measured in the same run on the same machine, and the ratio
figure / baseline, so numbers from different machines can be compared.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from tests.bench.common import Figure

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("only", nargs="*", help="benchmark names (bench_<name>.py), default all")
    parser.add_argument("--json", default="bench-results.json", help="where to write the figures")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    names = args.only or sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    figures: list[Figure] = []
    started = time.perf_counter()
    for name in names:
        module = importlib.import_module(f"tests.bench.bench_{name}")
        print(f"running {name}...", file=sys.stderr, flush=True)
        figures += module.run()
    print(table(figures))
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\n{machine}; {time.perf_counter() - started:.0f} s")
    Path(args.json).write_text(json.dumps({"machine": machine, "figures": [f.as_dict() for f in figures]}, indent=1))
    return 0


def table(figures: list[Figure]) -> str:
    rows = [("benchmark", "figure", "baseline", "", "ratio")]
    for f in figures:
        rows.append((f.name, f"{f.value:.4g} {f.unit}", f"{f.baseline_value:.4g} {f.unit}", f.baseline, f"{f.ratio:.3g}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
