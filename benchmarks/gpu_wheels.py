#!/usr/bin/env python
"""The wheels that the GPU check (benchmarks/gpu_check.py) carries to a GPU machine
without network, and their installation there.

    .venv/bin/python benchmarks/gpu_wheels.py          # here, with network: fills .gpu_wheels/

Preparing (here): every package of ``requirements/gpu.txt`` (the project's dependencies the
GPU machine's image lacks) as a wheel for CPython 3.12 on manylinux x86-64, downloaded with
``pip download --only-binary=:all: --no-deps``; a package published only as a source
archive is built here into a wheel, which must be pure Python (``py3-none-any``). Then
detectron2 v0.6, built exactly as ``tools/setup_env.py`` builds it (pure Python, with its
stand-in for the compiled ``_C``); that build runs ``pip`` of the interpreter running this
script, which must have torch (the project's ``.venv``). ``WHEELS.txt`` in the folder lists
the wheels, their sizes and sha256. The folder is git-ignored and travels with the working
tree when named in the device call's ``carry`` (docs/gpu.md).

Installing (there): :func:`install` runs ``pip install --no-index --no-deps --target`` of
the machine's Python over the folder's wheels; ``PYTHONPATH`` then puts that folder after
the checkout.

Only the standard library is imported, so that this runs before anything is installed.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
WHEEL_DIR = ROOT / ".gpu_wheels"
GPU_REQUIREMENTS = ROOT / "requirements" / "gpu.txt"
PROJECT_REQUIREMENTS = tuple(ROOT / "requirements" / name for name in ("runtime.txt", "test.txt", "export.txt"))
MANIFEST = "WHEELS.txt"
PYTHON_VERSION = "3.12"
PYTHON_TAG = "cp312"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
OVERRIDE_MARK = "GPU:"  # a gpu.txt comment that explains a pin other than the project's
SIZE_LIMIT_MIB = 16  # the working tree that travels is limited to 64 MiB in all

__all__ = ["WHEEL_DIR", "gpu_pins", "install", "prepare", "read_pins", "wheel_fits"]


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> Dict[str, Tuple[str, str, int]]:
    """{normalized name: (version, comment, line number)} of the ``name==version`` lines of
    a requirements file; any other requirement line is refused (the project pins all)."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        requirement, _, comment = line.partition("#")
        requirement = requirement.strip()
        if not requirement:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", requirement)
        if not match:
            raise ValueError(f"{path}:{number}: '{requirement}' is not pinned as name==version")
        pins[normalized(match[1])] = (match[2], comment.strip(), number)
    return pins


def gpu_pins(gpu: Path = GPU_REQUIREMENTS,
             project: Sequence[Path] = PROJECT_REQUIREMENTS) -> Dict[str, str]:
    """{name: version} of ``gpu``, checked against the ``project`` pins: a version that is
    not the project's (or a package the project does not pin) needs a comment starting
    with ``GPU:`` saying why; raises ValueError naming the file, line and package."""
    pinned = {}
    for path in project:
        pinned.update({name: (version, path) for name, (version, _, _) in read_pins(path).items()})
    pins = {}
    for name, (version, comment, number) in read_pins(gpu).items():
        theirs = pinned.get(name)
        if theirs and theirs[0] != version and not comment.startswith(OVERRIDE_MARK):
            raise ValueError(
                f"{gpu}:{number}: {name}=={version}, but {theirs[1].name} pins {theirs[0]}; "
                f"use the project's pin, or say why with a '# {OVERRIDE_MARK} ...' comment"
            )
        if not theirs and not comment.startswith(OVERRIDE_MARK):
            raise ValueError(
                f"{gpu}:{number}: {name} is not pinned in {', '.join(p.name for p in project)}; "
                f"say why the GPU machine needs it with a '# {OVERRIDE_MARK} ...' comment"
            )
        pins[name] = version
    return pins


def wheel_fits(filename: str) -> bool:
    """Whether a wheel file installs on CPython 3.12, manylinux x86-64."""
    parts = filename[: -len(".whl")].split("-")
    python, abi, platform = parts[-3:]
    pure = platform == "any" and abi == "none" and any(t in ("py3", PYTHON_TAG) for t in python.split("."))
    native = PYTHON_TAG in python.split(".") and abi in (PYTHON_TAG, "abi3", "none") and any(
        p in PLATFORMS for p in platform.split(".")
    )
    return pure or native


def pip(python: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    command = [python, "-m", "pip", "--disable-pip-version-check", *args]
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, **kwargs)


def fetch_wheel(python: str, name: str, version: str, folder: Path) -> Path:
    """The wheel of ``name==version`` for the GPU machine, downloaded into ``folder``, or
    built from the source archive where none is published (it must be pure Python)."""
    before = set(folder.glob("*.whl"))
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    done = pip(python, "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", PYTHON_VERSION, "--implementation", "cp", *platforms,
               "-d", str(folder), f"{name}=={version}")
    if done.returncode != 0:
        print(f"no wheel of {name}=={version} for CPython {PYTHON_VERSION}: building one", flush=True)
        pip(python, "wheel", "-q", "--no-deps", "--no-binary", name, "-w", str(folder),
            f"{name}=={version}", check=True)
    (wheel,) = set(folder.glob("*.whl")) - before
    if not wheel_fits(wheel.name):
        wheel.unlink()
        raise RuntimeError(f"{wheel.name} does not install on CPython {PYTHON_VERSION} manylinux x86-64")
    return wheel


def build_detectron2(python: str, folder: Path) -> Path:
    """detectron2 v0.6 as ``tools/setup_env.py`` builds it, copied into ``folder``."""
    spec = importlib.util.spec_from_file_location("setup_env", ROOT / "tools" / "setup_env.py")
    setup_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_env)
    with tempfile.TemporaryDirectory(prefix="lada-gpu-d2-") as tmp:
        wheel = setup_env.build_detectron2_wheel(Path(python), Path(tmp))
        return Path(shutil.copy2(wheel, folder / wheel.name))


def prepare(folder: Path = WHEEL_DIR, python: str = sys.executable) -> List[Path]:
    """Fills ``folder`` (emptied of wheels first) and writes its ``WHEELS.txt``; returns the
    wheels. Refuses a folder over ``SIZE_LIMIT_MIB``."""
    pins = gpu_pins()  # checked before anything is downloaded
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.whl"):
        old.unlink()
    wheels = [fetch_wheel(python, name, version, folder) for name, version in pins.items()]
    wheels.append(build_detectron2(python, folder))
    total = sum(w.stat().st_size for w in wheels)
    lines = [f"# {len(wheels)} wheels, {total / 2**20:.2f} MiB, for CPython {PYTHON_VERSION} "
             f"manylinux x86-64 (benchmarks/gpu_wheels.py from requirements/gpu.txt)"]
    lines += [f"{w.name}  {w.stat().st_size}  sha256={hashlib.sha256(w.read_bytes()).hexdigest()}"
              for w in sorted(wheels)]
    (folder / MANIFEST).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if total > SIZE_LIMIT_MIB * 2**20:
        raise RuntimeError(f"{folder}: {total / 2**20:.1f} MiB of wheels, over {SIZE_LIMIT_MIB} MiB")
    return wheels


def install(folder: Path, target: Path, python: str = sys.executable) -> subprocess.CompletedProcess:
    """Installs every wheel of ``folder`` into ``target`` with the pip of ``python``,
    offline and without resolving dependencies (the folder holds exactly what is missing)."""
    wheels = sorted(str(w) for w in folder.glob("*.whl"))
    if not wheels:
        raise FileNotFoundError(f"{folder} holds no wheel: prepare it with benchmarks/gpu_wheels.py")
    return pip(python, "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
               "--upgrade", "--target", str(target), *wheels, capture_output=True, text=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=WHEEL_DIR)
    args = parser.parse_args(argv)
    prepare(args.folder.absolute())


if __name__ == "__main__":
    main()
