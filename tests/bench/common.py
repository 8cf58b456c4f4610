"""What a benchmark reports, and a timer."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    baseline: str  # what the baseline is
    baseline_value: float

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def best_of(function: Callable[[], object], repeat: int = 5, number: int = 1) -> float:
    """Seconds per call: the best of `repeat` runs of `number` calls (the least disturbed one)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            function()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def sfumato_home(name: str) -> str:
    """Where a benchmark's Sfumato keeps its files: SFUMATO_HOME when set, else a folder of the system's
    temporary directory named for the benchmark (so the tiny models it builds are reused between runs)."""
    return os.environ.get("SFUMATO_HOME") or str(Path(tempfile.gettempdir()) / f"sfumato-bench-{name}")


def quick() -> bool:
    """SFUMATO_BENCH_QUICK=1: a benchmark that supports it runs on toy sizes, to check that it works (its figures
    mean nothing)."""
    return os.environ.get("SFUMATO_BENCH_QUICK") == "1"


def skipped(bench: str, reason: str) -> list[Figure]:
    """Say on stderr why a part of a benchmark measured nothing (a missing optional dependency), and report no
    figures for it."""
    print(f"{bench}: skipped: {reason}", file=sys.stderr, flush=True)
    return []


def peak_rss_mib() -> float:
    """The peak resident memory of this process so far. VmHWM, not ru_maxrss: ru_maxrss outlives exec, so in a
    child it would count the memory the parent shared between fork and exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return int(status.read().split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
