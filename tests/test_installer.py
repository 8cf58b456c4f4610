"""The installer's inputs are sound: icons render in every size, the desktop entry and Info.plist are valid.

Building and running the bundle itself takes minutes: `python installer/build.py --check` (see
installer/README.md; .ci/run does it after the tests).
"""

import configparser
import json
import os
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_icons_are_made_from_the_svg_in_every_size(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "installer" / "make_icons.py"), str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    for size in (16, 32, 48, 256, 1024):
        image = Image.open(tmp_path / f"sfumato-{size}.png")
        assert image.size == (size, size) and image.mode == "RGBA"
        assert image.getpixel((size // 2, size // 2))[3] == 255 and image.getpixel((0, 0))[3] == 0
    assert {(16, 16), (32, 32), (256, 256)} <= Image.open(tmp_path / "sfumato.ico").info["sizes"]
    assert Image.open(tmp_path / "sfumato.icns").size == (1024, 1024)


def test_the_linux_desktop_entry_is_complete():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str
    entry.read(ROOT / "resources" / "linux" / "sfumato.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Type"] == "Application" and desktop["Name"] == "Sfumato"
    assert desktop["Exec"].startswith("sfumato") and desktop["Icon"] == "sfumato"
    assert desktop["Categories"].endswith(";") and "image/openraster" in desktop["MimeType"]


def test_the_macos_info_plist_names_the_app_and_its_documents():
    with open(ROOT / "installer" / "macos" / "Info.plist", "rb") as handle:
        info = plistlib.load(handle)
    assert info["CFBundleIdentifier"] == "app.sfumato.Sfumato" and info["NSHighResolutionCapable"]
    assert any("ora" in kind.get("CFBundleTypeExtensions", []) for kind in info["CFBundleDocumentTypes"])


def test_the_spec_and_scripts_point_at_files_that_exist():
    spec = (ROOT / "installer" / "sfumato.spec").read_text()
    assert '"main.py"' in spec and '"resources"' in spec and "console=False" in spec
    for path in ("installer/windows/sfumato.iss", "installer/macos/make_dmg.sh", "installer/linux/install.sh",
                 "installer/linux/uninstall.sh", "resources/icons/sfumato.svg", "LICENSE"):
        assert (ROOT / path).is_file(), path


def run_install(tmp_path, ldd_output):
    """install.sh on a stub bundle, with `ldd` answering as a desktop with or without Qt's xcb libraries."""
    bundle = tmp_path / "bundle"
    platforms = bundle / "Sfumato" / "_internal" / "PySide6" / "Qt" / "plugins" / "platforms"
    platforms.mkdir(parents=True)
    (platforms / "libqxcb.so").write_bytes(b"")
    (bundle / "Sfumato" / "Sfumato").write_text("#!/bin/sh\n")
    for name in ("sfumato.png", "sfumato.svg"):
        (bundle / name).write_bytes(b"")
    (bundle / "sfumato.desktop").write_text((ROOT / "resources" / "linux" / "sfumato.desktop").read_text())
    shutil.copy(ROOT / "installer" / "linux" / "install.sh", bundle / "install.sh")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "ldd").write_text(f"#!/bin/sh\ncat <<'OUT'\n{ldd_output}\nOUT\n")
    (stubs / "ldd").chmod(0o755)
    home = tmp_path / "home"
    env = {"HOME": str(home), "PATH": f"{stubs}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", str(bundle / "install.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (home / ".local" / "share" / "sfumato" / "Sfumato" / "Sfumato").is_file()
    return done.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script")
def test_the_frozen_entry_point_lets_a_converter_process_run_before_the_app_starts():
    """OpenVINO converts in a child process (multiprocessing "spawn", desktop/engine/child.py): in the bundle that
    child runs the executable again, and only multiprocessing.freeze_support(), first thing in main.py, makes it
    run the conversion instead of opening a second window."""
    import ast

    tree = ast.parse((ROOT / "main.py").read_text(encoding="utf-8"))
    guard = next(node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test))
    assert ast.unparse(guard.body[0]) == "multiprocessing.freeze_support()"
    assert not [node for node in tree.body if isinstance(node, ast.ImportFrom)]  # the app is imported after it


def test_install_sh_names_the_xcb_packages_a_desktop_lacks(tmp_path):
    said = run_install(tmp_path, "\tlibxcb-cursor.so.0 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n"
                                 "\tlibxkbcommon-x11.so.0 => not found")
    assert said.strip() == ("Sfumato cannot open its window: Qt's X11 (xcb) support needs libraries that are "
                            "missing (libxcb-cursor.so.0, libxkbcommon-x11.so.0); on Debian or Ubuntu install them "
                            "with: sudo apt install libxcb-cursor0 libxkbcommon-x11-0")


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script")
def test_install_sh_says_nothing_when_every_library_is_there(tmp_path):
    assert run_install(tmp_path, "\tlibxcb-cursor.so.0 => /lib/libxcb-cursor.so.0 (0x1)") == ""


def test_install_sh_and_the_app_name_the_same_packages():
    from desktop import platform_check

    script = (ROOT / "installer" / "linux" / "install.sh").read_text()
    cases = dict(re.findall(r"^\s+(lib\S+)\) echo (\S+) ;;$", script, re.MULTILINE))
    assert cases == platform_check.XCB_LIBRARIES


def test_the_bundle_takes_spandrel_for_upscalers_and_leaves_torchvision_out():
    spec = (ROOT / "installer" / "sfumato.spec").read_text()
    assert 'collect_submodules("spandrel"' in spec  # imported only when a picture is upscaled
    excludes = re.search(r"excludes = \[(.*?)\]", spec, re.DOTALL).group(1)
    assert '"torchvision"' in excludes  # upscalers run without it (desktop/engine/upscale.py)


def test_the_bundle_takes_c2pa_s_shared_library_where_c2pa_looks_for_it_and_not_its_rlib():
    """Content credentials (desktop/core/credentials.py) load c2pa's native library with ctypes: the spec adds it
    to the libs folder beside c2pa's module, the one c2pa searches, and never the 31 MB Rust build artefact."""
    import importlib.util

    spec = (ROOT / "installer" / "sfumato.spec").read_text()
    block = spec[spec.index('find_spec("c2pa")'):spec.index("# diffusers and transformers")]
    assert '"libc2pa_c.so", "libc2pa_c.dylib", "c2pa_c.dll"' in block and '"c2pa/libs"' in block
    assert ".rlib" not in block.split("\n", 1)[1] and "binaries=binaries" in spec
    excludes = re.search(r"excludes = \[(.*?)\]", spec, re.DOTALL).group(1)
    assert '"c2pa.build"' in excludes and 'name != "c2pa.build"' in block  # a download script, never needed
    package = Path(importlib.util.find_spec("c2pa").submodule_search_locations[0])
    assert 'Path(__file__).parent / "libs"' in (package / "lib.py").read_text()  # where the bundle puts it
    assert (package / "libs" / "libc2pa_c.so").is_file() or sys.platform != "linux"


def test_the_bundle_collects_the_package_of_every_pipeline_the_engine_makes():
    """Pipelines are made by class at run time (ModelManager.pipeline), which PyInstaller's scan does not see:
    each one's package must be in the spec's collect list, or the bundled app fails the first time it is used
    (a ControlNet generation, say) although the smoke check passes."""
    from desktop.engine.models import _PIPELINES

    spec = (ROOT / "installer" / "sfumato.spec").read_text()
    collected = re.findall(r'"((?:diffusers|transformers)\.[a-z_.]+)"', spec)
    for cls in set(_PIPELINES.values()):
        assert any(cls.__module__.startswith(package + ".") for package in collected), cls.__module__


def test_the_bundle_collects_the_flow_pipelines_their_parts_and_gguf():
    """The flow families' pipelines (desktop/engine/flow.py) and the classes they are built from (transformer, VAE,
    text encoders, tokenizers), named in their constructors, are found by name at run time; GGUF files need the
    gguf package, which diffusers looks up by its installed metadata."""
    import inspect
    import typing

    from desktop.engine import flow

    spec = (ROOT / "installer" / "sfumato.spec").read_text()
    collected = re.findall(r'"((?:diffusers|transformers)\.[a-z_.0-9]+)"', spec)
    needed = set()
    for cls in flow.pipeline_classes():
        needed.add(cls.__module__)
        for parameter in inspect.signature(cls.__init__).parameters.values():
            for kind in typing.get_args(parameter.annotation) or (parameter.annotation,):
                if isinstance(kind, type) and kind.__module__.startswith(("diffusers.", "transformers.models.")):
                    needed.add(kind.__module__)
    assert "transformers.models.t5.modeling_t5" in needed and "transformers.models.qwen3.modeling_qwen3" in needed
    for module in needed - {"transformers.models.auto.tokenization_auto"}:  # transformers imports auto itself
        assert any(module == package or module.startswith(package + ".") for package in collected), module
    assert '"gguf")' in spec and 'copy_metadata(dist)' in spec
    assert re.search(r'"cryptography", "gguf"\)', spec), "gguf's metadata: diffusers asks whether it is installed"


def openvino_library_rule():
    """The spec's choice of openvino/libs files (installer/sfumato.spec openvino_library), run on its own."""
    spec = (ROOT / "installer" / "sfumato.spec").read_text()
    namespace = {"Path": Path}
    exec(spec[spec.index("OPENVINO_LIBS = "):spec.index("\n_openvino = ")], namespace)  # noqa: S102 - our own spec
    return namespace


def test_the_bundle_takes_openvino_s_cpu_plugin_and_pytorch_frontend_and_not_its_gpu_npu_or_other_frontends():
    """libopenvino loads its plugins and frontends by name from beside itself, which PyInstaller cannot see: the CPU
    plugin and the PyTorch (convert_model) and IR (reading the cache) frontends must go in; the GPU and NPU plugins
    and the ONNX/TensorFlow/Paddle/JAX/GGUF frontends stay out."""
    import importlib.util

    keep = openvino_library_rule()["openvino_library"]
    for name in ("libopenvino.so.2641", "libopenvino_intel_cpu_plugin.so", "libopenvino_pytorch_frontend.so.2641",
                 "libopenvino_ir_frontend.so.2641", "libtbb.so.12", "libtbbmalloc.so.2", "libtbbbind_2_5.so.3",
                 "libhwloc.so.15", "libopenvino_auto_plugin.so", "openvino.dll", "openvino_intel_cpu_plugin.dll",
                 "openvino_pytorch_frontend.dll", "tbb12.dll", "libopenvino.2641.dylib",
                 "libopenvino_intel_cpu_plugin.so"):
        assert keep(name), name
    for name in ("libopenvino_intel_gpu_plugin.so", "libopenvino_intel_npu_plugin.so", "cache.json", "tbb.pc",
                 "libopenvino_onnx_frontend.so.2641", "libopenvino_tensorflow_frontend.so.2641",
                 "libopenvino_tensorflow_lite_frontend.so.2641", "libopenvino_paddle_frontend.so.2641",
                 "libopenvino_jax_frontend.so.2641", "libopenvino_gguf_frontend.so.2641", "libopenvino_c.so.2641",
                 "libtbbmalloc_proxy.so.2", "openvino_intel_gpu_plugin.dll", "openvino_onnx_frontend.dll"):
        assert not keep(name), name
    spec = (ROOT / "installer" / "sfumato.spec").read_text()
    excludes = re.search(r"excludes = \[(.*?)\]", spec, re.DOTALL).group(1)
    assert '"openvino_telemetry"' in excludes and "*OPENVINO_UNUSED" in excludes  # it would report usage
    assert 'copy_metadata("openvino")' in spec  # cpu_runtime.versions() reads it
    libs = Path(importlib.util.find_spec("openvino").submodule_search_locations[0]) / "libs"
    kept = sum(p.stat().st_size for p in libs.iterdir() if keep(p.name)) / 2**20
    everything = sum(p.stat().st_size for p in libs.iterdir()) / 2**20
    assert kept < 100 and everything - kept > 60, (kept, everything)  # about 87 MiB of 158 MiB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the library layout of the Linux wheel")
def test_openvino_converts_and_runs_on_the_cpu_with_only_the_libraries_the_bundle_takes(tmp_path):
    """openvino, with only what the spec takes in its libs folder (linked, not copied), converts the CPU runtime
    probe from PyTorch and runs it: nothing the bundle leaves out is needed at run time (installer/build.py --check
    proves it again in the real bundle, where the app measures its CPU runtimes at the start)."""
    import importlib.util

    keep = openvino_library_rule()["openvino_library"]
    unused = openvino_library_rule()["OPENVINO_UNUSED"]
    package = Path(importlib.util.find_spec("openvino").submodule_search_locations[0])
    mirror = tmp_path / "site" / "openvino"
    for path in package.rglob("*"):
        relative = path.relative_to(package)
        module = "openvino." + ".".join(relative.with_suffix("").parts)
        if path.is_dir() or module.startswith(unused) or (relative.parts[0] == "libs" and not keep(path.name)):
            continue
        (mirror / relative).parent.mkdir(parents=True, exist_ok=True)
        (mirror / relative).symlink_to(path)
    code = (
        "import json; from desktop.engine import devices, runtime_probe\n"
        "m = runtime_probe.measure(devices.choose('cpu', 'fp32'), 32, 4, 1)\n"
        "import openvino, openvino.frontend\n"
        "frontends = sorted(openvino.frontend.FrontEndManager().get_available_front_ends())\n"
        "print(json.dumps({'openvino_s': m.openvino_s, 'note': m.note, 'module': openvino.__file__,\n"
        "                  'frontends': frontends, 'devices': openvino.Core().available_devices}))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["module"] == str(mirror / "__init__.py")
    assert found["openvino_s"] is not None, found["note"]
    # libopenvino looked for its plugins and frontends in the linked folder, not in the installed package
    assert found["frontends"] == ["ir", "pytorch"] and found["devices"] == ["CPU"], found
