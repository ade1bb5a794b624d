"""Everything that differs between detectron2 v0.6 (pure-Python build) and upstream main,
and every change lada makes to detectron2: this module is the one place where they are
listed and made. Import it before anything from ``detectron2`` (``import lada`` does).

Applied when lada is imported (process-wide), each because lada's own code needs it:

* ``detectron2._C`` stand-in. Without the compiled extension (deformable conv, rotated
  boxes, ROIAlignRotated, the fast COCO evaluator), ``detectron2.layers`` cannot be
  imported. A stand-in module is registered instead; using any op of it raises
  :class:`MissingCompiledOpError` naming the op. FCOS-family models need none of them.
  (The build of ``tools/setup_env.py`` carries its own stand-in, so that scripts import
  detectron2 without lada; this one covers other builds without ``_C``.)
  :data:`HAS_COMPILED_OPS` tells the evaluator whether the fast COCO-eval op exists.
* v0.6's ``detectron2.data.transforms`` names ``PIL.Image.LINEAR`` in a default argument,
  so it fails at import with Pillow 10 or later, which removed that alias of ``BILINEAR``
  (Python 3.12 has no older Pillow; the project pins Pillow 9.5 elsewhere): there the
  alias is given back before detectron2 is imported (:func:`_restore_pillow_linear`), and
  on Pillow 9.5, which serves it with a deprecation warning, it is made a plain
  attribute of the same value, so that no command prints that warning.
* ``create_ddp_model`` (both versions) gives DistributedDataParallel the local rank as
  ``device_ids``, which DDP refuses for a CPU model: for CPU models none is given
  (multi-process training on the CPU, docs/scale-out.md), and torch's deprecation of the
  trainers' ``broadcast_buffers`` is not shown.
* :func:`create_local_process_group`: the per-machine process group that
  ``comm.get_local_rank()`` reads, created by upstream's helper or, on v0.6, directly
  (not a patch).
* ``fvcore.nn`` (imported by ``detectron2.engine`` for precise BN) and
  ``detectron2.modeling.box_regression`` script functions and classes with
  ``torch.jit.script`` at import, which torch 2.14 answers with a deprecation
  ``FutureWarning`` on every command. lada uses neither scripted object, but both modules
  are needed (the trainer, the model registry): they are imported here with exactly that
  warning ignored (:func:`_import_scripting_modules`). Not a patch: nothing is changed.
* ``MapDataset`` (both versions) documents that a mapper may return None to skip an
  element and then draws a replacement with ``random.sample`` from a set, which Python
  3.11 refuses (TypeError): its generator is given a ``sample`` that accepts sets (lada's
  mapper skips unreadable images that way, docs/reliability.md).
* ``detectron2.export`` of v0.6 imports its caffe2 exporter in ``__init__``, so without
  caffe2 (absent from every recent torch) even ``TracingAdapter`` cannot be imported
  (``detectron2.utils.analysis``, the FLOP counter of ``tools/analyze_model.py``, uses it).
  There, ``detectron2.export`` is registered as a package
  holding the caffe2-free parts (``TracingAdapter``, ``scripting_with_instances``,
  ``dump_torchscript_IR``); its caffe2 names raise an ImportError that says so.

Applied only when called (:func:`patch_detectron2_fcos_head_norm`), by code that builds
detectron2's own FCOS head next to lada's (a comparison with detectron2's FCOS):

* v0.6's ``RetinaNetHead`` (and so its ``FCOSHead``) probes the type of its norm with
  ``get_norm(norm, 1)``, which for ``norm="GN"`` is ``GroupNorm(32, 1)``, refused by
  torch ("num_channels must be divisible by num_groups"): patched, that probe is given 32
  channels, as upstream main does. ``LadaFCOS`` has its own head and does not need it.

The v0.6 / main API differences the tests meet (``FCOS.match_anchors`` became
``FCOS._match_anchors`` with an (M, R) quality matrix) are handled in the tests.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import random
import sys
import types
import warnings

from .harmless_warnings import BROADCAST_BUFFERS, ignoring

__all__ = ["HAS_COMPILED_OPS", "MissingCompiledOpError", "create_local_process_group",
           "detectron2_in_use", "patch_detectron2_fcos_head_norm"]


class MissingCompiledOpError(RuntimeError):
    """A compiled detectron2 op was used, but this detectron2 has no ``_C`` extension."""


class _MissingCompiledOps(types.ModuleType):
    """Stand-in for ``detectron2._C`` whose attributes raise a clear error when used."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingCompiledOpError(
            f"detectron2 compiled op '{name}' is unavailable: this detectron2 was installed "
            "without its C++/CUDA extension (detectron2._C). Models of lada do not need it; "
            "to use this op, install detectron2 from source (see README, 'detectron2 versions')."
        )


def _install_compiled_ops_stand_in() -> bool:
    """Returns whether the real ``detectron2._C`` is importable."""
    try:
        if importlib.util.find_spec("detectron2._C") is not None:
            return True
    except ImportError:
        return True
    import detectron2

    # Only the package attribute is set, for `from detectron2 import _C`: a plain
    # `import detectron2._C` keeps failing, so that detectron2's environment report
    # still says the extension is missing.
    detectron2._C = _MissingCompiledOps("detectron2._C")
    return False


def _restore_pillow_linear() -> None:
    """``PIL.Image.LINEAR``, Pillow's name for ``BILINEAR`` until Pillow 10 (module
    docstring), as a plain attribute: Pillow 9.5, the pinned version, serves it only
    through a module ``__getattr__`` that warns of its removal each time detectron2's
    transforms are imported; nothing changes where it is an attribute."""
    from PIL import Image

    if "LINEAR" not in vars(Image):
        Image.LINEAR = Image.Resampling.BILINEAR


_restore_pillow_linear()
HAS_COMPILED_OPS: bool = _install_compiled_ops_stand_in()


def detectron2_in_use() -> str:
    """Which detectron2 is imported: version, package folder and whether it has its
    compiled ops (for test reports and bug reports; v0.6 and main both say 0.6)."""
    import detectron2

    folder = os.path.dirname(os.path.abspath(detectron2.__file__))
    ops = "compiled ops" if HAS_COMPILED_OPS else "no compiled ops (lada.compat stand-in for _C)"
    return f"detectron2 {detectron2.__version__} from {folder}, {ops}"


def _import_scripting_modules() -> None:
    """Imports the third-party modules that call ``torch.jit.script`` at import, without
    its deprecation warnings (their code, which lada cannot change); only that message is
    ignored, only during these imports."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.script` is (deprecated|not supported)",
            category=FutureWarning,
        )
        import detectron2.modeling.box_regression  # noqa: F401
        import fvcore.nn  # noqa: F401


def _cpu_aware_ddp(create_ddp_model):
    def create(model, **kwargs):
        if next(model.parameters()).device.type == "cpu":
            kwargs.setdefault("device_ids", None)
        with ignoring(BROADCAST_BUFFERS):  # detectron2's own argument (lada.harmless_warnings)
            return create_ddp_model(model, **kwargs)

    create.__doc__ = create_ddp_model.__doc__
    return create


def _patch_create_ddp_model() -> None:
    from detectron2.engine import defaults

    defaults.create_ddp_model = _cpu_aware_ddp(defaults.create_ddp_model)


def create_local_process_group(num_workers_per_machine: int) -> None:
    """Creates the process group of the workers of this machine (after
    ``init_process_group``), as detectron2's launcher does."""
    from detectron2.utils import comm

    if hasattr(comm, "create_local_process_group"):
        comm.create_local_process_group(num_workers_per_machine)
        return
    import torch.distributed as dist

    machine = dist.get_rank() // num_workers_per_machine
    for i in range(dist.get_world_size() // num_workers_per_machine):
        ranks = list(range(i * num_workers_per_machine, (i + 1) * num_workers_per_machine))
        group = dist.new_group(ranks)
        if i == machine:
            comm._LOCAL_PROCESS_GROUP = group


class _SetSamplingRandom(random.Random):
    """``random.Random`` whose ``sample`` accepts a set (in sorted order, so reproducible),
    as before Python 3.11."""

    def sample(self, population, k, *, counts=None):
        if isinstance(population, (set, frozenset)):
            if not population:
                raise RuntimeError(
                    "MapDataset: the mapper returned None (skipped) for every element tried; "
                    "see the warnings above"
                )
            population = sorted(population)
        return super().sample(population, k, counts=counts)


def _patch_map_dataset_fallback() -> None:
    from detectron2.data.common import MapDataset

    init = MapDataset.__init__

    def __init__(self, dataset, map_func):
        init(self, dataset, map_func)
        self._rng = _SetSamplingRandom(42)  # the seed MapDataset uses

    __init__.__doc__ = init.__doc__
    MapDataset.__init__ = __init__


def patch_detectron2_fcos_head_norm() -> None:
    """Lets v0.6's ``RetinaNetHead`` / ``FCOSHead`` build with ``norm="GN"`` (module
    docstring); nothing on upstream main or when already applied. Call it before building
    detectron2's own FCOS head."""
    from detectron2.layers import get_norm
    from detectron2.modeling.meta_arch import retinanet

    if "get_norm(norm, 1)" not in inspect.getsource(retinanet.RetinaNetHead.__init__):
        return  # upstream main probes with 32 channels

    def get_norm_probing_with_32_channels(norm, out_channels):
        return get_norm(norm, 32 if out_channels == 1 else out_channels)

    if getattr(retinanet.get_norm, "__name__", "") == "get_norm_probing_with_32_channels":
        return
    get_norm_probing_with_32_channels.__doc__ = get_norm.__doc__
    retinanet.get_norm = get_norm_probing_with_32_channels


_CAFFE2_EXPORT_NAMES = (
    "add_export_config", "Caffe2Model", "Caffe2Tracer", "export_caffe2_model", "export_onnx_model",
)


class _ExportWithoutCaffe2(types.ModuleType):
    """``detectron2.export`` without the caffe2 exporter (see the module docstring)."""

    def __getattr__(self, name: str):
        if name in _CAFFE2_EXPORT_NAMES:
            raise ImportError(
                f"detectron2.export.{name} needs caffe2, which this torch does not include; "
                "export with tools/export_model.py (torch.export) instead"
            )
        raise AttributeError(f"module 'detectron2.export' has no attribute '{name}'")


def _make_export_importable_without_caffe2() -> None:
    try:
        import detectron2.export  # noqa: F401
        return
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith("caffe2"):
            raise
    for name in [n for n in sys.modules if n.startswith("detectron2.export.")]:
        del sys.modules[name]  # the submodules the failed __init__ had imported
    spec = importlib.util.find_spec("detectron2.export")
    package = _ExportWithoutCaffe2("detectron2.export", _ExportWithoutCaffe2.__doc__)
    package.__spec__, package.__file__ = spec, spec.origin
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = "detectron2.export"
    sys.modules["detectron2.export"] = package
    import detectron2
    from detectron2.export.flatten import TracingAdapter
    from detectron2.export.torchscript import dump_torchscript_IR, scripting_with_instances

    detectron2.export = package
    package.TracingAdapter = TracingAdapter
    package.dump_torchscript_IR = dump_torchscript_IR
    package.scripting_with_instances = scripting_with_instances
    package.__all__ = ["TracingAdapter", "dump_torchscript_IR", "scripting_with_instances"]


_import_scripting_modules()
_patch_create_ddp_model()
_patch_map_dataset_fallback()
_make_export_importable_without_caffe2()
