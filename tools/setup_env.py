"""Create or complete the project's Python environment; a second run is a no-op.

Steps, each skipped when already satisfied:
  1. a virtual environment at ``--venv`` (default ``.venv``);
  2. torch/torchvision from ``requirements/torch.txt`` unless torch already imports
     (a user's own CUDA build is kept);
  3. the pinned runtime, test and export (onnx, onnxruntime) dependencies, resolved
     together so that no extra moves a runtime pin;
  4. detectron2: an importable one (for instance a source build with its CUDA ops) is
     used as is; otherwise v0.6 is built as a pure-Python wheel from the
     ``pb1-detectron2`` sdist on PyPI, whose ``.py`` files equal upstream's v0.6 tag but
     which lacks the C++ sources needed by its own setup script;
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

# Builds only detectron2's Python package and its model-zoo configs: no C++ extension,
# no top-level `tools` package (it would shadow other modules named `tools`).
_D2_SETUP_PY = """
from setuptools import find_packages, setup
setup(
    name="detectron2",
    version="0.6",
    description="detectron2 v0.6, Python sources only (built by lada's tools/setup_env.py)",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]},
    python_requires=">=3.7",
)
"""


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


def build_detectron2(python: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="lada-d2-") as tmp:
        tmp = Path(tmp)
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
        pip(python, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
            str(package_root))
        (wheel,) = (tmp / "dist").glob("detectron2-*.whl")
        pip(python, "install", "--no-deps", str(wheel))


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
    if imports(python, "detectron2"):
        print("using the detectron2 already installed in", venv)
    else:
        build_detectron2(python)
    pip(python, "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT))
    stamp.write_text(wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    args = parser.parse_args()
    os.chdir(ROOT)
    setup(args.venv.absolute())


if __name__ == "__main__":
    main()
