"""desktop.core and the app's start-up never import Qt or torch, and desktop.ui reaches the engine only
through a Backend (ARCHITECTURE.md, section 1)."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

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


# desktop/ui reaches the engine only through a Backend (desktop/core/backend.py): module -> why it may import it.
UI_ENGINE_IMPORTS_ALLOWED = {
    "desktop.ui.main_window": "local_backend(), the factory of the window's LocalBackend, run on the worker thread",
}


def engine_imports(path: Path, module: str) -> list[str]:
    """Every import of desktop.engine in a module, also inside functions and as a relative import."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [name for name in names if name == "desktop.engine" or name.startswith("desktop.engine.")]
    return found


def test_ui_never_imports_the_engine_outside_the_backend_factory():
    import desktop.ui

    root = Path(desktop.ui.__file__).parent
    offenders = {}
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("desktop", "ui", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        if module not in UI_ENGINE_IMPORTS_ALLOWED and engine_imports(path, module):
            offenders[module] = engine_imports(path, module)
    assert offenders == {}
    assert engine_imports(root / "main_window.py", "desktop.ui.main_window"), "the allow-list is out of date"


def test_the_layering_check_sees_lazy_and_relative_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def later():\n    from ..engine import generate\n    import desktop.engine.models\n")
    assert set(engine_imports(source, "desktop.ui.probe")) >= {"desktop.engine", "desktop.engine.models"}


def test_the_cli_reaches_the_engine_only_through_its_local_backend():
    import desktop.cli

    assert set(engine_imports(Path(desktop.cli.__file__), "desktop.cli")) == {
        "desktop.engine.local", "desktop.engine.local.DemoModelUnwritable", "desktop.engine.local.LocalBackend"}
