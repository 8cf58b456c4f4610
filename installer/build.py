#!/usr/bin/env python
"""Build Sfumato's installer for this platform in one command.

    python installer/build.py            # icons, the PyInstaller bundle, then the package
    python installer/build.py --check    # ... and run the built app's --smoke check

Output in dist/:
- Linux:   Sfumato/ (the one-folder app) and Sfumato-<version>-linux-<arch>.tar.gz, which holds the
           folder, the .desktop entry, the icon and install.sh (a per-user install, no root needed).
- Windows: Sfumato/ and, when Inno Setup's ISCC.exe is on PATH, Sfumato-<version>-setup.exe.
- macOS:   Sfumato.app and, through installer/macos/make_dmg.sh, Sfumato-<version>.dmg.
Needs PyInstaller (`pip install pyinstaller`) in the environment Sfumato runs from.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST, BUILD = ROOT / "dist", ROOT / "build"


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def run(*command: str) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def bundle() -> Path:
    run(sys.executable, str(ROOT / "installer" / "make_icons.py"), str(BUILD / "icons"))
    run(sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--distpath", str(DIST),
        "--workpath", str(BUILD / "pyinstaller"), str(ROOT / "installer" / "sfumato.spec"))
    return DIST / "Sfumato"


def package_linux(folder: Path) -> Path:
    name = f"Sfumato-{version()}-linux-{platform.machine()}"
    archive = DIST / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=f"{name}/Sfumato")
        tar.add(ROOT / "resources" / "linux" / "sfumato.desktop", arcname=f"{name}/sfumato.desktop")
        tar.add(BUILD / "icons" / "sfumato-256.png", arcname=f"{name}/sfumato.png")
        tar.add(ROOT / "resources" / "icons" / "sfumato.svg", arcname=f"{name}/sfumato.svg")
        tar.add(ROOT / "installer" / "linux" / "install.sh", arcname=f"{name}/install.sh")
        tar.add(ROOT / "installer" / "linux" / "uninstall.sh", arcname=f"{name}/uninstall.sh")
        tar.add(ROOT / "LICENSE", arcname=f"{name}/LICENSE")
    return archive


def package_windows(folder: Path) -> Path | None:
    iscc = shutil.which("ISCC") or shutil.which("iscc")
    if iscc is None:
        print("Inno Setup (ISCC.exe) is not on PATH: the one-folder app is in dist/Sfumato; see installer/README.md")
        return None
    run(iscc, f"/DAppVersion={version()}", f"/DSourceDir={folder}", f"/DIconFile={BUILD / 'icons' / 'sfumato.ico'}",
        f"/O{DIST}", str(ROOT / "installer" / "windows" / "sfumato.iss"))
    return DIST / f"Sfumato-{version()}-setup.exe"


def package_macos() -> Path:
    run("bash", str(ROOT / "installer" / "macos" / "make_dmg.sh"), str(DIST / "Sfumato.app"), version(), str(DIST))
    return DIST / f"Sfumato-{version()}.dmg"


def size_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(prog="python installer/build.py")
    parser.add_argument("--check", action="store_true", help="run the built app's --smoke check afterwards")
    args = parser.parse_args()
    started = time.perf_counter()
    folder = bundle()
    if sys.platform.startswith("linux"):
        package = package_linux(folder)
    elif sys.platform == "win32":
        package = package_windows(folder)
    else:
        package = package_macos()
    seconds = time.perf_counter() - started
    print(f"\nbuilt in {seconds:.0f} s: {folder} ({size_mib(folder):.0f} MiB)")
    if package is not None:
        print(f"package: {package} ({size_mib(package):.0f} MiB)")
    if args.check:
        return subprocess.run([sys.executable, str(ROOT / "installer" / "check_bundle.py")], cwd=ROOT).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
