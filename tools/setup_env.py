"""Create or complete the project's Python environment; a second run is a no-op.

Steps, each skipped when already satisfied:
  1. a virtual environment at ``--venv`` (default ``.venv``);
  2. torch/torchvision from ``requirements/torch.txt`` unless torch already imports
     (a user's own CUDA build is kept);
  3. the pinned runtime, test and export (onnx, onnxruntime) dependencies, resolved
     together so that no extra moves a runtime pin;
  4. detectron2: an importable one (for instance a source build with its CUDA ops) is
     used as is, unless it is an earlier build of this script; otherwise v0.6 is built as
     a pure-Python wheel from the ``pb1-detectron2`` sdist on PyPI, whose ``.py`` files
     equal upstream's v0.6 tag but which lacks the C++ sources needed by its own setup
     script. The wheel adds one module, ``detectron2/_missing_compiled_ops.py``, which
     its ``__init__`` runs so that detectron2 imports without ``lada`` (see
     :data:`_D2_MISSING_OPS_PY`);
  5. this project, installed in editable mode.

Only the Python standard library is used, so it runs before anything is installed.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
D2_SDIST = "pb1-detectron2==0.6"
D2_SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
STAMP_NAME = ".lada-setup-stamp"
# The wheel's summary, which tells this script's builds apart; a new build number makes
# `make setup` replace an earlier build.
D2_BUILD_PREFIX = "detectron2 v0.6, Python sources only (built by lada's tools/setup_env.py"
D2_BUILD_SUMMARY = D2_BUILD_PREFIX + ", build 2)"

# Builds only detectron2's Python package and its model-zoo configs: no C++ extension,
# no top-level `tools` package (it would shadow other modules named `tools`).
_D2_SETUP_PY = """
from setuptools import find_packages, setup
setup(
    name="detectron2",
    version="0.6",
    description=%r,
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},
    python_requires=">=3.7",
)
""" % D2_BUILD_SUMMARY


# detectron2.layers (imported by detectron2.structures, .modeling, .utils.visualizer, ...)
# starts with `from detectron2 import _C`, which fails without the compiled extension.
_D2_MISSING_OPS_PY = '''"""Stand-in for ``detectron2._C``, the compiled extension this pure-Python build of
detectron2 v0.6 lacks (added by lada's tools/setup_env.py).

``from detectron2 import _C`` gets a module whose attributes raise
:class:`MissingCompiledOpError` naming the op (deformable conv, rotated boxes,
ROIAlignRotated, the fast COCO evaluator); everything else of detectron2 works. A plain
``import detectron2._C`` still fails, so that detectron2's environment report
(``python -m detectron2.utils.collect_env``) says the extension is missing.
"""
import importlib.util
import types


class MissingCompiledOpError(RuntimeError):
    """A compiled detectron2 op was used, but this detectron2 has no ``_C`` extension."""


class MissingCompiledOps(types.ModuleType):
    """Stand-in for ``detectron2._C`` whose attributes raise a clear error when used."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingCompiledOpError(
            f"detectron2 compiled op '{name}' is unavailable: this detectron2 is lada's "
            "pure-Python build, without its C++/CUDA extension (detectron2._C); to use "
            "this op, install detectron2 from source (lada's README, 'Installation')."
        )


def install_stand_in():
    import detectron2

    if importlib.util.find_spec("detectron2._C") is None:
        detectron2._C = MissingCompiledOps("detectron2._C")
'''
_D2_INIT_ADDITION = """
# Added by lada's tools/setup_env.py: a stand-in for the missing compiled extension.
from ._missing_compiled_ops import install_stand_in as _install_stand_in

_install_stand_in()
"""


def add_missing_ops_stand_in(package: Path) -> None:
    """Adds :data:`_D2_MISSING_OPS_PY` to the detectron2 package folder ``package`` and
    runs it from its ``__init__.py``, after detectron2's own set-up."""
    (package / "_missing_compiled_ops.py").write_text(_D2_MISSING_OPS_PY)
    init = package / "__init__.py"
    init.write_text(init.read_text() + _D2_INIT_ADDITION)


def run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def imports(python: Path, module: str) -> bool:
    probe = f"import {module}"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def pip(python: Path, *args: str) -> None:
    run([python, "-m", "pip", "--disable-pip-version-check", "-q", *args])


def fingerprint() -> str:
    """Hash of every file that decides what the environment contains."""
    digest = hashlib.sha256()
    for path in sorted(REQUIREMENTS.glob("*.txt")) + [ROOT / "pyproject.toml", Path(__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def installed_summary(python: Path, distribution: str) -> str:
    """The installed ``distribution``'s one-line summary ('' when it has no metadata)."""
    probe = ("import importlib.metadata as m, sys\n"
             "try: print(m.metadata(sys.argv[1])['Summary'] or '')\n"
             "except m.PackageNotFoundError: print('')")
    done = subprocess.run([python, "-c", probe, distribution], capture_output=True, text=True)
    return done.stdout.strip()


def keeps_detectron2(python: Path) -> bool:
    """Whether the installed detectron2 is kept: it imports and is not an earlier build of
    this script (a user's own build is always kept)."""
    if not imports(python, "detectron2"):
        return False
    summary = installed_summary(python, "detectron2")
    return not summary.startswith(D2_BUILD_PREFIX) or summary == D2_BUILD_SUMMARY


def build_detectron2(python: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="lada-d2-") as tmp:
        wheel = build_detectron2_wheel(python, Path(tmp))
        pip(python, "install", "--no-deps", "--force-reinstall", str(wheel))


def build_detectron2_wheel(python: Path, tmp: Path) -> Path:
    """Builds the pure-Python detectron2 v0.6 wheel in the folder ``tmp``; returns it."""
    # pip evaluates the sdist's metadata with its setup.py, which imports torch:
    # hence no build isolation.
    pip(python, "download", "--no-deps", "--no-binary", ":all:",
        "--no-build-isolation", "-d", str(tmp), D2_SDIST)
    (sdist,) = tmp.glob("*.tar.gz")
    actual = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if actual != D2_SDIST_SHA256:
        sys.exit(f"{sdist.name}: sha256 {actual}, expected {D2_SDIST_SHA256}")
    src = tmp / "src"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/detectron2/" in m.name]
        archive.extractall(src, members=members, filter="data")
    (package_root,) = src.iterdir()
    (package_root / "setup.py").write_text(_D2_SETUP_PY)
    add_missing_ops_stand_in(package_root / "detectron2")
    pip(python, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
        str(package_root))
    (wheel,) = (tmp / "dist").glob("detectron2-*.whl")
    return wheel


def setup(venv: Path) -> None:
    python = venv / "bin" / "python"
    stamp = venv / STAMP_NAME
    wanted = fingerprint()
    if stamp.is_file() and stamp.read_text() == wanted and imports(python, "lada"):
        print(f"environment {venv} is up to date")
        return
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    if not imports(python, "torch"):
        pip(python, "install", "-r", str(REQUIREMENTS / "torch.txt"))
    pip(python, "install", "-r", str(REQUIREMENTS / "runtime.txt"),
        "-r", str(REQUIREMENTS / "test.txt"), "-r", str(REQUIREMENTS / "export.txt"))
    if keeps_detectron2(python):
        print("using the detectron2 already installed in", venv)
    else:
        build_detectron2(python)
    pip(python, "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT))
    stamp.write_text(wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    args = parser.parse_args()
    os.chdir(ROOT)
    setup(args.venv.absolute())


if __name__ == "__main__":
    main()
