"""`python main.py --smoke`: the real start-up path, one generation, one JSON line."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from desktop.core.infotext import parse_infotext

MAIN = Path(__file__).resolve().parents[2] / "main.py"


def test_smoke_generates_through_the_window_and_reports(sfumato_home):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SFUMATO_HOME": str(sfumato_home)}
    out = subprocess.run([sys.executable, str(MAIN), "--smoke"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["torch_imported_before_window"] is False
    assert figures["previews"] == 8
    assert 0 < figures["window_shown_s"] < figures["engine_ready_s"]
    assert 0 < figures["first_preview_s"] < figures["result_s"]
    assert figures["max_ui_stall_ms"] < 500  # measured 4-7 ms; a blocked GUI thread shows as seconds
    info = parse_infotext(Image.open(figures["saved"]).text["parameters"])
    assert info.prompt == "a lighthouse on a cliff at dusk" and info.params["Steps"] == "8"
