"""Shared fixtures: seeded RNG, a small LadaFCOS config and synthetic batches."""
import logging
import os
import sys
from pathlib import Path

import lada  # noqa: F401  (prepares detectron2 before any test imports it)
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances

from lada.config import add_lada_config
from lada.custom_imports import import_custom

NUM_CLASSES = 5
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the benchmarks hold the per-GT scikit-learn reference

# Matchers of your own, registered before the tests are collected, so that the
# registry-driven tests (tests/matchers/test_invariants.py, test_scale.py) take them too:
#   LADA_CUSTOM_IMPORTS=path/to/my_matcher.py python -m pytest tests/matchers/test_invariants.py
# (several entries separated by the path separator, files or module names).
import_custom(entry for entry in os.environ.get("LADA_CUSTOM_IMPORTS", "").split(os.pathsep) if entry)


def pytest_report_header(config):
    return lada.compat.detectron2_in_use()


def pytest_configure(config):
    """``LADA_DETECTRON2_SRC`` (``make test``) names the detectron2 source tree to test
    against: refuse to run the suite on another detectron2."""
    source = os.environ.get("LADA_DETECTRON2_SRC")
    if not source:
        return
    import detectron2

    wanted = Path(source).resolve() / "detectron2"
    if Path(detectron2.__file__).resolve().parent != wanted:
        raise pytest.UsageError(
            f"LADA_DETECTRON2_SRC={source}, but {lada.compat.detectron2_in_use()}; put "
            f"{Path(source).resolve()} first on PYTHONPATH (make test does)"
        )


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are skipped where torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (benchmarks/gpu_check.py runs it on a GPU machine)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _propagating_loggers():
    """``setup_cfg`` run in a test's process calls detectron2's ``setup_logger``, which
    stops these loggers propagating to the root, where pytest's ``caplog`` listens: later
    tests would capture nothing."""
    yield
    for name in ("lada", "detectron2", "fvcore", "d2"):
        logging.getLogger(name).propagate = True


@pytest.fixture(autouse=True)
def _new_datasets_unregistered():
    """Removes, after each test, the datasets it registered (a run in the test's process
    registers its config's datasets under their fixed names, e.g. ``synthetic_train`` or
    ``study_quick_train``), so that a later test may register those names with its own
    files. Datasets of module-scoped fixtures, set up before it, stay."""
    registered = set(DatasetCatalog.list())
    yield
    for name in set(DatasetCatalog.list()) - registered:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def default_cfg(**overrides):
    """The lada defaults (the papers' hyperparameters), with ``KEY: value`` overrides."""
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_list([item for pair in overrides.items() for item in pair])
    return cfg


def small_cfg(**overrides):
    """A CPU config of the quick model (ResNet-18-FPN, 64 channels) for 5 classes."""
    cfg = get_cfg()
    add_lada_config(cfg)
    cfg.merge_from_file(str(REPO / "configs/quick/Base-Quick.yaml"))
    cfg.DATASETS.REGISTER_COCO = []
    cfg.merge_from_list([item for pair in overrides.items() for item in pair])
    return cfg


def random_boxes(num: int, size: int, generator=None) -> torch.Tensor:
    """(num, 4) valid XYXY boxes inside a size x size image, widely varying shapes."""
    xy = torch.rand(num, 2, generator=generator) * (size - 8)
    wh = 4 + torch.rand(num, 2, generator=generator) * (size / 1.5)
    return torch.cat([xy, (xy + wh).clamp(max=size - 1)], dim=1)


def make_batch(num_gts, size=128):
    """Batched inputs as detectron2's DatasetMapper makes them, one image per entry of
    ``num_gts`` (number of GT boxes, 0 allowed)."""
    batch = []
    for count in num_gts:
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(random_boxes(count, size))
        instances.gt_classes = torch.randint(0, NUM_CLASSES, (count,))
        batch.append({"image": torch.randint(0, 256, (3, size, size)).float(), "instances": instances})
    return batch
