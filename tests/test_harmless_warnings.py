"""The third-party warnings without an action for the user are silenced where lada
triggers them, by exact message, and only there: the same warning raised outside still
shows (lada/harmless_warnings.py). That a real run's console holds none of them is
checked on train_net.py's output (tests/engine/test_run_folder.py)."""
import logging
import warnings

import numpy as np
import torch
from conftest import make_batch, small_cfg
from detectron2.modeling import build_model
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.utils.events import EventStorage
from fvcore.transforms.transform import HFlipTransform
from PIL import Image

from lada.data import ReadCheckedDatasetMapper
from lada.engine.launch import _without_harmless_warnings
from lada.harmless_warnings import (
    MESHGRID, NO_CUDA_RUNTIME, NON_WRITABLE_ARRAY, ignoring_log_record,
)


def _recorded(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught]


def _warning_of(harmless, original):
    """``original`` (a third-party function lada calls) made to raise the warning
    ``harmless`` itself: torch raises its own once per process, so the first test to
    trigger it would hide it from the others."""
    message = harmless.message.replace("\\", "") + " (raised by the test)"

    def warn(*args, **kwargs):
        warnings.warn(message, harmless.category)
        return original(*args, **kwargs)
    return warn


def test_the_training_mapper_is_silent_on_the_non_writable_array(tmp_path, monkeypatch):
    image = tmp_path / "img.png"
    Image.fromarray(np.full((32, 32, 3), 120, dtype=np.uint8)).save(image)
    cfg = small_cfg(**{"INPUT.MIN_SIZE_TRAIN": "(32,)", "INPUT.MAX_SIZE_TRAIN": "32"})
    mapper = ReadCheckedDatasetMapper(cfg, True, dataset_names=())
    record = {"file_name": str(image), "height": 32, "width": 32, "image_id": 1,
              "annotations": [{"bbox": [4, 4, 10, 10], "bbox_mode": 0, "category_id": 0}]}
    monkeypatch.setattr(HFlipTransform, "apply_image",
                        _warning_of(NON_WRITABLE_ARRAY, HFlipTransform.apply_image))
    np.random.seed(0)  # 20 draws of p = 0.5: flips happen
    assert _recorded(lambda: [mapper(dict(record)) for _ in range(20)]) == []
    read_only = np.asarray(Image.open(image))  # what detectron2's reader returns
    assert _recorded(lambda: HFlipTransform(32).apply_image(read_only))  # outside: shown


def test_the_point_grid_of_a_forward_is_silent_on_meshgrid(monkeypatch):
    model = build_model(small_cfg(**{"MODEL.MATCHER.NAME": "atss"}))
    monkeypatch.setattr(DefaultAnchorGenerator, "_grid_anchors",
                        _warning_of(MESHGRID, DefaultAnchorGenerator._grid_anchors))
    with EventStorage(0):
        assert _recorded(lambda: model(make_batch([2]))) == []
    model.eval()
    assert _recorded(lambda: model([{"image": make_batch([0])[0]["image"]}])) == []
    assert _recorded(lambda: model.anchor_generator._grid_anchors([(4, 4)] * 5))  # outside


def _gather_like_detectron2():
    torch.storage._reset_warn_typed_storage_removal()  # it warns once per process
    torch.ByteStorage.from_buffer(b"lada")  # detectron2 v0.6's comm._serialize_to_tensor


def test_training_processes_run_without_the_typed_storage_warning():
    assert _recorded(lambda: _without_harmless_warnings(_gather_like_detectron2)) == []
    assert any("TypedStorage is deprecated" in m for m in _recorded(_gather_like_detectron2))


def test_the_no_cuda_runtime_record_is_dropped_only_inside_the_block():
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    torch_logger = logging.getLogger(NO_CUDA_RUNTIME.logger)
    torch_logger.addHandler(handler)
    try:
        with ignoring_log_record(NO_CUDA_RUNTIME):
            torch_logger.warning("No CUDA runtime is found, using CUDA_HOME='/usr/local'")
            torch_logger.warning("another record")
        torch_logger.warning("No CUDA runtime is found, using CUDA_HOME='/usr/local'")
    finally:
        torch_logger.removeHandler(handler)
    assert seen == ["another record", "No CUDA runtime is found, using CUDA_HOME='/usr/local'"]


def test_the_ddp_model_of_the_trainers_is_built_without_the_broadcast_buffers_warning(monkeypatch):
    """lada's create_ddp_model (lada.compat) around detectron2's; a process group of one."""
    from detectron2.engine import defaults

    built = []

    def ddp(model, **kwargs):
        warnings.warn("`broadcast_buffers` is deprecated. Use `forward_sync_buffers` instead.",
                      FutureWarning)
        built.append(kwargs)
        return model

    monkeypatch.setattr(defaults, "DistributedDataParallel", ddp)
    monkeypatch.setattr(defaults.comm, "get_world_size", lambda: 2)
    model = torch.nn.Linear(2, 2)
    assert _recorded(lambda: defaults.create_ddp_model(model, broadcast_buffers=False)) == []
    assert built == [{"device_ids": None, "broadcast_buffers": False}]
    assert _recorded(lambda: ddp(model))  # outside: shown
