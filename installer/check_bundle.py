#!/usr/bin/env python
"""Run the built app (dist/) with --smoke and the demo model: it must show its window, paint, and exit 0.

    python installer/check_bundle.py [path to the executable]

Runs in a throwaway profile (SFUMATO_HOME), offscreen when there is no
screen, and prints the smoke figures, among them window_shown_s: the time
from launching the executable to its window being shown. On a computer
without a GPU the app measures its CPU runtimes at the start: OpenVINO must
have run in the bundle then (cpu_runtime in the figures), or the check fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def default_executable() -> Path:
    if sys.platform == "win32":
        return ROOT / "dist" / "Sfumato" / "Sfumato.exe"
    if sys.platform == "darwin":
        return ROOT / "dist" / "Sfumato.app" / "Contents" / "MacOS" / "Sfumato"
    return ROOT / "dist" / "Sfumato" / "Sfumato"


def main() -> int:
    executable = Path(sys.argv[1]) if len(sys.argv) > 1 else default_executable()
    if not executable.exists():
        print(f"{executable} does not exist: build it first with python installer/build.py", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sfumato-bundle-check-") as home:
        env = {**os.environ, "SFUMATO_HOME": home, "HF_HUB_OFFLINE": "1"}
        if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            env["QT_QPA_PLATFORM"] = "offscreen"
        started = time.perf_counter()
        result = subprocess.run([str(executable), "--smoke"], env=env, capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - started
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines:
            print(f"the bundle failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
                  file=sys.stderr)
            logs = Path(home) / "logs"
            for log in sorted(logs.glob("*")) if logs.is_dir() else []:
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            return 1
        measured = cpu_runtime_measured(Path(home))
    figures = json.loads(lines[-1])
    if measured is not None:
        figures["cpu_runtime"] = measured
        if measured.get("openvino_s") is None:
            print(f"the bundle's OpenVINO could not run: {measured.get('note')}", file=sys.stderr)
            return 1
    print(json.dumps({**figures, "total_s": round(seconds, 1)}))
    return 0


def cpu_runtime_measured(home: Path) -> dict | None:
    """What the app measured of PyTorch and OpenVINO at its start (desktop/core/cpu_runtime.py), when it ran on
    the CPU: the bundle's OpenVINO, its CPU plugin and PyTorch frontend included, ran then, or the note says why."""
    try:
        data = json.loads((home / "data" / "cpu_runtime.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a GPU ran the smoke check: no measurement is made
    return {key: data.get(key) for key in ("pytorch_s", "openvino_s", "note")}


if __name__ == "__main__":
    sys.exit(main())
