"""tools/setup_env.py's pure-Python detectron2 build: the stand-in for the missing compiled
extension that lets ``import detectron2.structures`` work without ``import lada``, and
when an installed detectron2 is kept or rebuilt."""
import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import REPO


def _setup_env():
    spec = importlib.util.spec_from_file_location("setup_env", REPO / "tools" / "setup_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup_env = _setup_env()

# What detectron2.layers does at import, and what its environment report does.
PROBE = """
import detectron2.layers
from detectron2 import _C
try:
    _C.deform_conv_forward
except Exception as error:
    print(type(error).__name__, error)
try:
    import detectron2._C
except ImportError as error:
    print("import:", error)
"""


def _fake_detectron2(root, compiled=False):
    """root/detectron2: an __init__, a layers module importing _C, optionally a real _C."""
    package = root / "detectron2"
    package.mkdir()
    (package / "__init__.py").write_text('__version__ = "0.6"\n')
    (package / "layers.py").write_text("from detectron2 import _C\n")
    if compiled:
        (package / "_C.py").write_text("def deform_conv_forward():\n    pass\n")
    return package


def _run_probe(root):
    env = {**os.environ, "PYTHONPATH": str(root)}  # the fake package, not the installed one
    return subprocess.run([sys.executable, "-c", PROBE], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)


def test_without_the_stand_in_detectron2_layers_does_not_import(tmp_path):
    _fake_detectron2(tmp_path)
    done = _run_probe(tmp_path)
    assert done.returncode != 0 and "cannot import name '_C'" in done.stderr


def test_the_stand_in_names_the_op_and_keeps_the_import_failing(tmp_path):
    setup_env.add_missing_ops_stand_in(_fake_detectron2(tmp_path))
    done = _run_probe(tmp_path)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("MissingCompiledOpError detectron2 compiled op 'deform_conv_forward'"
                            " is unavailable")
    assert "install detectron2 from source" in first
    assert second == "import: No module named 'detectron2._C'"


def test_the_stand_in_leaves_a_real_compiled_extension(tmp_path):
    setup_env.add_missing_ops_stand_in(_fake_detectron2(tmp_path, compiled=True))
    done = _run_probe(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # the op exists and `import detectron2._C` works


@pytest.mark.parametrize("importable, summary, kept", [
    (False, "", False),  # no detectron2: build it
    (True, setup_env.D2_BUILD_PREFIX + ")", False),  # an earlier build of setup_env: rebuild
    (True, setup_env.D2_BUILD_SUMMARY, True),
    (True, "Detectron2 is FAIR's next-generation research platform", True),  # the user's own
    (True, "", True),  # no metadata (e.g. on PYTHONPATH): the user's own
])
def test_which_installed_detectron2_is_kept(monkeypatch, importable, summary, kept):
    monkeypatch.setattr(setup_env, "imports", lambda python, module: importable)
    monkeypatch.setattr(setup_env, "installed_summary", lambda python, name: summary)
    assert setup_env.keeps_detectron2(sys.executable) is kept
