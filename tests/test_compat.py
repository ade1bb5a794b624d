"""detectron2 without its compiled extension: everything imports, a missing op is named."""
import pytest

from lada import compat


@pytest.mark.skipif(compat.HAS_COMPILED_OPS, reason="this detectron2 has its compiled ops")
def test_missing_compiled_op_raises_a_clear_error():
    from detectron2 import _C
    from detectron2.layers import deform_conv  # noqa: F401  (imports without _C)

    with pytest.raises(compat.MissingCompiledOpError, match="'deform_conv_forward' is unavailable"):
        _C.deform_conv_forward
