"""desktop.core and the app's start-up never import Qt or torch (ARCHITECTURE.md, section 1)."""

import pkgutil
import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "PySide6")


def imported_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in %r)))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_imports_neither_qt_nor_torch():
    import desktop.core

    modules = [m.name for m in pkgutil.walk_packages(desktop.core.__path__, "desktop.core.")]
    assert "desktop.core.document" in modules
    assert imported_after("\n".join(f"import {name}" for name in modules)) == set()


@pytest.mark.parametrize("module", ["desktop.cli", "desktop.__main__"])
def test_cli_start_up_does_not_import_torch(module):
    assert not imported_after(f"import {module}") & {"torch", "diffusers", "transformers"}
