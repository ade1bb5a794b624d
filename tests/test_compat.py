"""detectron2 without its compiled extension: everything imports, a missing op is named."""
import subprocess
import sys

import pytest
from conftest import REPO

from lada import compat


@pytest.mark.skipif(compat.HAS_COMPILED_OPS, reason="this detectron2 has its compiled ops")
def test_missing_compiled_op_raises_a_clear_error():
    from detectron2 import _C
    from detectron2.layers import deform_conv  # noqa: F401  (imports without _C)

    with pytest.raises(compat.MissingCompiledOpError, match="'deform_conv_forward' is unavailable"):
        _C.deform_conv_forward


def test_detectron2_fcos_head_builds_with_group_norm():
    """v0.6's RetinaNetHead probes its norm with ``get_norm(norm, 1)``: GroupNorm(32, 1).
    The patch is opt-in (LadaFCOS does not need it); applying it twice is harmless."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.meta_arch.fcos import FCOSHead
    from torch import nn

    compat.patch_detectron2_fcos_head_norm()
    compat.patch_detectron2_fcos_head_norm()

    head = FCOSHead(input_shape=[ShapeSpec(channels=64)] * 2, num_classes=3, conv_dims=[64, 64],
                    norm="GN")
    norms = [m for m in head.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 4  # two convs in each of the two towers
    assert all((m.num_groups, m.num_channels) == (32, 64) for m in norms)


def test_importing_lada_and_train_net_raises_no_future_warning():
    """fvcore's and detectron2's module-level ``torch.jit.script`` calls are imported
    without their deprecation warning; any other FutureWarning still fails this."""
    command = "import lada, lada.engine, lada.study, train_net"
    process = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", command],
                             cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""},
                             capture_output=True, text=True)
    assert process.returncode == 0, process.stderr[-2000:]
    assert "jit" not in process.stderr


def test_pillow_without_linear_gets_the_alias_detectron2_v06_imports(monkeypatch):
    # Pillow 10 removed Image.LINEAR, which v0.6's detectron2.data.transforms uses as a
    # default argument: the alias is given back as BILINEAR, and only where it is missing
    # (a stand-in module: Pillow 9.5 serves LINEAR through a deprecating __getattr__)
    import types

    import PIL

    pillow_10 = types.SimpleNamespace(Resampling=types.SimpleNamespace(BILINEAR=2))
    monkeypatch.setattr(PIL, "Image", pillow_10)
    compat._restore_pillow_linear()
    assert pillow_10.LINEAR == 2
    pillow_10.LINEAR = "kept"
    compat._restore_pillow_linear()
    assert pillow_10.LINEAR == "kept"


def test_pillow_9_serves_linear_without_its_deprecation_warning():
    # Pillow 9.5 (pinned) answers Image.LINEAR through a warning module __getattr__, which
    # v0.6's transforms trigger at import: once lada is imported, no command shows it
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert Image.LINEAR == Image.Resampling.BILINEAR
    process = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning:PIL", "-c",
         "import lada, detectron2.data.transforms"],
        cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""}, capture_output=True, text=True)
    assert process.returncode == 0, process.stderr[-2000:]


def test_detectron2_export_imports_without_caffe2():
    # detectron2.utils.analysis (tools/analyze_model.py's FLOP counter) imports TracingAdapter
    import detectron2.export
    from detectron2.export import TracingAdapter  # noqa: F401  (fails on v0.6 without lada.compat)

    if isinstance(detectron2.export, compat._ExportWithoutCaffe2):
        with pytest.raises(ImportError, match="caffe2"):
            detectron2.export.Caffe2Tracer
