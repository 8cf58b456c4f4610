"""desktop.core and the app's start-up never import Qt or torch (ARCHITECTURE.md, section 1)."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "PySide6")


def imported_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in %r)))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_imports_neither_qt_nor_torch():
    modules = "geometry request infotext modelfiles model_sources atomic settings paths imageio outputs progress samplers errors"
    code = "\n".join(f"import desktop.core.{name}" for name in modules.split())
    assert imported_after(code) == set()


@pytest.mark.parametrize("module", ["desktop.cli", "desktop.__main__"])
def test_cli_start_up_does_not_import_torch(module):
    assert not imported_after(f"import {module}") & {"torch", "diffusers", "transformers"}
