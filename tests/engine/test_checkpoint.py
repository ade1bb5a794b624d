"""Checkpoints: .pkl weights through a restricted unpickler, clear errors naming the file,
atomic writes, failed saves that say what is left, resume from the newest complete one."""
import errno
import logging
import os
import pickle
import struct
import traceback

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from lada.engine import CheckpointError, CheckpointSaveError, LadaCheckpointer
from lada.engine.checkpoint import LAZY_KEYS, _AtomicFile, failed_save_last
from lada.engine.resume import CheckpointFile, choose_resume_checkpoint
from conftest import small_cfg


class _Payload:
    """Unpickling it calls ``call(*args)``: what a crafted checkpoint does."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _py2_pickle(weights: dict) -> bytes:
    """``weights`` (name -> float32 C-order array) pickled as Detectron's
    ``tools/pickle_caffe_blobs.py`` wrote the ImageNet models detectron2 loads (R-50.pkl):
    Python 2 cPickle at HIGHEST_PROTOCOL (2) of a flat dict, names unicode
    (``unicode_literals``: BINUNICODE), array data and dtype codes py2 ``str``
    ((SHORT_)BINSTRING), arrays through numpy's ``_reconstruct`` + BUILD."""

    def unicode(value: str) -> bytes:
        return b"X" + struct.pack("<I", len(value.encode())) + value.encode()

    def string(value: bytes) -> bytes:
        if len(value) < 256:
            return b"U" + bytes([len(value)]) + value
        return b"T" + struct.pack("<i", len(value)) + value

    def small_int(value: int) -> bytes:
        return b"K" + bytes([value])

    out = [b"\x80\x02}("]
    for name, array in weights.items():
        assert array.dtype == np.float32 and array.flags.c_contiguous and max(array.shape) < 256
        out += [
            unicode(name),
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n",
            small_int(0), b"\x85", string(b"b"), b"\x87R",
            b"(", small_int(1), b"(", *map(small_int, array.shape), b"t",
            b"cnumpy\ndtype\n", string(b"f4"), small_int(0), small_int(1), b"\x87R",
            b"(", small_int(3), string(b"<"), b"NNN", b"J\xff\xff\xff\xffJ\xff\xff\xff\xff",
            small_int(0), b"tb",
            b"\x89", string(array.tobytes()), b"tb",
        ]
    return b"".join(out + [b"u."])


def _r50_like_weights(model) -> dict:
    """Caffe2 names of the quick model's stem (ResNet stem: conv1, GN as res_conv1_bn),
    plus a momentum blob and a classifier that the conversion drops or ignores."""
    rng = np.random.default_rng(0)
    stem = model.backbone.bottom_up.stem.conv1
    return {
        "conv1_w": rng.standard_normal(stem.weight.shape).astype(np.float32),
        "conv1_w_momentum": np.zeros(stem.weight.shape, np.float32),
        "res_conv1_bn_s": rng.standard_normal(stem.weight.shape[:1]).astype(np.float32),
        "res_conv1_bn_b": rng.standard_normal(stem.weight.shape[:1]).astype(np.float32),
        "fc1000_b": rng.standard_normal(10).astype(np.float32),
    }


@pytest.fixture(scope="module")
def model():
    return build_model(small_cfg())


def test_python2_model_zoo_pickle_loads_like_detectron2(model, tmp_path):
    weights = _r50_like_weights(model)
    path = tmp_path / "R-50.pkl"
    path.write_bytes(_py2_pickle(weights))
    ours = LadaCheckpointer(model)._load_file(str(path))
    reference = DetectionCheckpointer(model)._load_file(str(path))  # plain pickle
    assert ours.keys() == reference.keys() and ours["__author__"] == "Caffe2"
    assert sorted(ours["model"]) == ["conv1_w", "fc1000_b", "res_conv1_bn_b", "res_conv1_bn_s"]
    for name, array in reference["model"].items():
        np.testing.assert_array_equal(ours["model"][name], array)
        np.testing.assert_array_equal(ours["model"][name], weights[name])

    LadaCheckpointer(model).load(str(path))  # name-matching heuristics as detectron2
    stem = model.backbone.bottom_up.stem.conv1
    np.testing.assert_array_equal(stem.weight.detach().numpy(), weights["conv1_w"])
    np.testing.assert_array_equal(stem.norm.weight.detach().numpy(), weights["res_conv1_bn_s"])
    np.testing.assert_array_equal(stem.norm.bias.detach().numpy(), weights["res_conv1_bn_b"])


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_detectron2_model_zoo_pickle_of_python3_loads(model, tmp_path, protocol):
    data = {"model": {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
                      "b": np.array(3, dtype=np.int64)},
            "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = LadaCheckpointer(model)._load_file(str(path))
    assert loaded.keys() == data.keys() and loaded["__author__"] == "Detectron2 Model Zoo"
    for name, array in data["model"].items():
        np.testing.assert_array_equal(loaded["model"][name], array)
        assert loaded["model"][name].dtype == array.dtype


def _payloads(target):
    return {
        "open": _Payload(open, str(target), "w"),
        "os.system": _Payload(os.system, f"touch {target}"),
        "object array": np.array([_Payload(open, str(target), "w")], dtype=object),
    }


@pytest.mark.parametrize("kind", ["open", "os.system", "object array"])
def test_malicious_pickle_is_refused_before_it_runs(model, tmp_path, kind):
    target = tmp_path / "pwned"
    payload = _payloads(target)[kind]
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"conv1_w": np.zeros(3, np.float32), "x": payload}, protocol=2))
    with pytest.raises(CheckpointError) as error:
        LadaCheckpointer(model).load(str(path))
    assert str(error.value).startswith(f"refused checkpoint {path}: refused ")
    assert "MODEL.WEIGHTS_TRUST_PICKLE True" in str(error.value)
    assert not target.exists()
    # The payload is real: plain pickle (the explicit opt-in) runs it.
    with pytest.raises(Exception):
        LadaCheckpointer(model, trust_pickle=True).load(str(path))
    assert target.exists()


def test_pth_with_code_is_refused_by_torch_weights_only(model, tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "x": _Payload(open, str(target), "w")}, path)
    with pytest.raises(CheckpointError, match=f"cannot load checkpoint {path}: UnpicklingError: Weights only"):
        LadaCheckpointer(model).load(str(path))
    assert not target.exists()


@pytest.mark.parametrize("name, content, reason", [
    ("text.pth", b"hello world\n", "cannot load checkpoint"),
    ("random.pth", bytes(range(256)) * 4, "cannot load checkpoint"),
    ("text.pkl", b"hello world\n", "not a pickle of weights"),
    ("empty.pkl", b"", "not a pickle of weights (EOFError"),
    ("list.pkl", pickle.dumps([1, 2]), "holds a list, not a dict of weights"),
    ("none.pkl", pickle.dumps({}), "holds no model weights"),
    ("strings.pkl", pickle.dumps({"conv1_w": "abc"}), "weight 'conv1_w' is a str"),
])
def test_not_a_checkpoint_names_the_file(model, tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        LadaCheckpointer(model).load(str(path))
    assert str(path) in str(error.value) and reason in str(error.value)


def test_tensor_file_is_not_a_checkpoint(model, tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path}"):
        LadaCheckpointer(model).load(str(path))


# ---------------------------------------------------------------- atomic writes


def _files(folder):
    return sorted(os.listdir(folder))


def test_save_writes_final_names_only(model, tmp_path):
    checkpointer = LadaCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    assert _files(tmp_path) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert oct((tmp_path / "model_0000001.pth").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 1


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _full_disk_after(limit):
    """A writer of checkpoint files that raises ENOSPC, as a full file system does, once
    ``limit`` bytes of the file are written."""
    def write(self, data):
        written = self._file.tell()
        if written + len(data) > limit:
            self._file.write(bytes(data)[: max(limit - written, 0)])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._file.write(data)
    return write


def test_failed_write_leaves_previous_checkpoint_intact(model, tmp_path, monkeypatch):
    checkpointer = LadaCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    monkeypatch.setattr(_AtomicFile, "write", _full_disk_after(4096), raising=False)
    with pytest.raises(CheckpointSaveError) as error:
        checkpointer.save("model_0000002", iteration=2)
    monkeypatch.undo()
    message = str(error.value)
    assert message.startswith(
        f"cannot save checkpoint {tmp_path / 'model_0000002.pth'}: No space left on device. "
        "Nothing was written under that name; the checkpoint --resume continues from, "
        f"model_0000001.pth (iteration 1), is intact. Free space on the file system of {tmp_path} ("
    )
    assert message.endswith(" MiB free there now) or set OUTPUT_DIR (train.output_dir) elsewhere, "
                            "then continue with --resume.")
    assert error.value.errno == errno.ENOSPC
    # what Python prints last: this message, not torch's chained C++ "unexpected pos"
    printed = "".join(traceback.format_exception(error.value))
    assert printed.splitlines()[-1] == f"lada.engine.checkpoint.CheckpointSaveError: {message}"
    assert "enforce fail" not in printed and "[Errno 28] No space left on device" in printed
    assert _files(tmp_path) == ["last_checkpoint", "model_0000001.pth"]
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 1


def test_failed_flush_removes_the_partial_file(model, tmp_path, monkeypatch):
    checkpointer = LadaCheckpointer(model, str(tmp_path))

    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(CheckpointSaveError) as error:
        checkpointer.save("model_0000001", iteration=1)
    assert str(error.value).startswith(
        f"cannot save checkpoint {tmp_path / 'model_0000001.pth'}: Input/output error. Nothing "
        "was written under that name; no checkpoint of this run is on disk yet. Check the disk "
        f"of {tmp_path} (")
    assert _files(tmp_path) == []


def test_failed_last_checkpoint_update_says_the_checkpoint_is_complete(model, tmp_path, monkeypatch):
    checkpointer = LadaCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    real_open = _AtomicFile.__init__

    def refuse_last_checkpoint(self, path, mode):
        if os.path.basename(path) == "last_checkpoint":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_open(self, path, mode)
    monkeypatch.setattr(_AtomicFile, "__init__", refuse_last_checkpoint)
    with pytest.raises(CheckpointSaveError) as error:
        checkpointer.save("model_0000002", iteration=2)
    monkeypatch.undo()
    assert str(error.value).startswith(
        f"cannot update {tmp_path / 'last_checkpoint'}: No space left on device. The checkpoint "
        "model_0000002.pth is complete, and --resume continues from it. Free space on")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 2


def test_a_failed_save_stays_the_last_error_when_ending_the_run_fails_too(model, tmp_path, monkeypatch):
    """A full disk also fails the writers that flush metrics.json when the loop ends."""
    checkpointer = LadaCheckpointer(model, str(tmp_path))
    monkeypatch.setattr(_AtomicFile, "write", _full_disk_after(0), raising=False)
    with pytest.raises(CheckpointSaveError, match="cannot save checkpoint"):
        with failed_save_last():
            try:
                checkpointer.save("model_0000000", iteration=0)
            finally:  # as TrainerBase.train's after_train
                raise OSError(errno.ENOSPC, "No space left on device (metrics.json)")
    with pytest.raises(KeyError):  # other errors pass unchanged
        with failed_save_last():
            raise KeyError("x")


def test_resume_ignores_and_reports_unfinished_writes(model, tmp_path):
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    checkpointer = LadaCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    leftover = tmp_path / ".model_0000002.pth.123.abcd.partial"
    leftover.write_bytes(b"truncated")
    checkpointer.logger.addHandler(handler)
    try:
        assert checkpointer.resume_or_load("", resume=True)["iteration"] == 1
    finally:
        checkpointer.logger.removeHandler(handler)
    assert any(leftover.name in r.getMessage() for r in records)
    assert leftover.exists()  # not deleted: another process might be writing it
    assert "model_0000001.pth" in checkpointer.get_all_checkpoint_files()[0]
    assert len(checkpointer.get_all_checkpoint_files()) == 1


# ---------------------------------------------------------------- resume


def _f(name, mtime, iteration=None, error=None):
    return CheckpointFile(name, mtime, iteration, error)


@pytest.mark.parametrize("files, tag, tag_time, name, reason", [
    # killed between the checkpoint's rename and last_checkpoint's: the newer one
    ([_f("model_0000009.pth", 10, 9), _f("model_0000019.pth", 30, 19)], "model_0000009.pth", 20,
     "model_0000019.pth", "written after last_checkpoint's model_0000009.pth (iteration 9): the "
     "run stopped after saving it and before updating last_checkpoint"),
    ([_f("model_0000009.pth", 10, 9), _f("model_0000019.pth", 30, 19)], "model_0000019.pth", 31,
     "model_0000019.pth", "the newest complete checkpoint, as last_checkpoint says"),
    # model_final and the periodic checkpoint of the same iteration: the newer file
    ([_f("model_0000019.pth", 10, 19), _f("model_final.pth", 11, 19)], "model_final.pth", 12,
     "model_final.pth", "as last_checkpoint says"),
    ([_f("model_0000009.pth", 10, 9), _f("model_0000019.pth", 30, 19)], None, None,
     "model_0000019.pth", "(the folder has no last_checkpoint file)"),
    ([_f("model_0000009.pth", 10, 9), _f("model_0000019.pth", 30, 19)], "model_0000029.pth", 40,
     "model_0000019.pth", "last_checkpoint names model_0000029.pth, which is missing"),
    # exported weights (no iteration) are not checkpoints of the run
    ([_f("model_0000009.pth", 10, 9), _f("weights.pth", 30)], "model_0000009.pth", 20,
     "model_0000009.pth", "as last_checkpoint says"),
])
def test_resume_takes_the_newest_complete_checkpoint(files, tag, tag_time, name, reason):
    choice = choose_resume_checkpoint(files, tag, tag_time)
    assert choice.name == name and reason in choice.reason
    assert choice.warnings == () and choice.refusal is None


def test_resume_skips_an_unreadable_newer_file_with_a_warning():
    files = [_f("model_0000009.pth", 10, 9), _f("model_0000019.pth", 30, error="EOFError: cut")]
    choice = choose_resume_checkpoint(files, "model_0000009.pth", 20)
    assert choice.name == "model_0000009.pth" and choice.iteration == 9
    assert choice.warnings == ("skipping model_0000019.pth: not a complete checkpoint (EOFError: "
                               "cut); move it away to keep it (the run saves over files of its name)",)


def test_resume_leaves_out_a_later_iteration_of_an_earlier_run_with_a_warning():
    """A run to iteration 99, then a run started without --resume into the same folder,
    killed at iteration 4: last_checkpoint was updated after model_final.pth was written."""
    files = [_f("model_final.pth", 10, 99), _f("model_0000004.pth", 20, 4)]
    choice = choose_resume_checkpoint(files, "model_0000004.pth", 21)
    assert choice.name == "model_0000004.pth"
    assert len(choice.warnings) == 1 and choice.warnings[0].startswith(
        "not resuming from model_final.pth (iteration 99): it was written before last_checkpoint "
        "was updated to name a checkpoint of a lower iteration")


def test_resume_refuses_a_folder_of_checkpoints_none_complete():
    files = [_f("model_0000009.pth", 10, error="EOFError: cut")]
    choice = choose_resume_checkpoint(files, "model_0000009.pth", 20)
    assert choice.name is None and choice.refusal.startswith(
        "no complete checkpoint to resume from: last_checkpoint names model_0000009.pth; "
        "unreadable: model_0000009.pth.")
    empty = choose_resume_checkpoint([], None, None)  # a new run: nothing to resume, no error
    assert empty.name is None and empty.refusal is None


def test_resume_reads_the_files_it_chooses_from(model, tmp_path, caplog, monkeypatch):
    """Killed after model_0000002.pth was renamed into place, before last_checkpoint named
    it; a copy cut short lies beside them: the resume loads model_0000002.pth."""
    checkpointer = LadaCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000001", iteration=1)
    monkeypatch.setattr(LadaCheckpointer, "tag_last_checkpoint", lambda self, name: None)
    checkpointer.save("model_0000002", iteration=2)
    monkeypatch.undo()
    data = (tmp_path / "model_0000002.pth").read_bytes()
    (tmp_path / "model_0000003.pth").write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.INFO, logger="fvcore.common.checkpoint"):
        assert LadaCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 2
    messages = [r.getMessage() for r in caplog.records]
    assert f"--resume: continuing from {tmp_path / 'model_0000002.pth'} (iteration 2): the newest " \
           "complete checkpoint, written after last_checkpoint's model_0000001.pth (iteration 1)" \
           ": the run stopped after saving it and before updating last_checkpoint" in messages
    assert any(m.startswith(f"--resume in {tmp_path}: skipping model_0000003.pth: not a complete "
                            "checkpoint (") for m in messages)


def test_checkpoint_of_another_class_count_reinitialises_the_class_head(tmp_path, caplog):
    """The embedded-data checkpoint (5 classes) as MODEL.WEIGHTS of a 1-class model: all
    but the class head loads; the head keeps its initialisation, with the focal-loss
    prior bias -log((1 - 0.01) / 0.01) (RetinaNet section 4.1), and a line says so."""
    source = build_model(small_cfg())
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(1.0)  # every saved value differs from a fresh model's
    DetectionCheckpointer(source, save_dir=str(tmp_path)).save("five_classes")

    torch.manual_seed(1)
    target = build_model(small_cfg(**{"MODEL.FCOS.NUM_CLASSES": "1"}))
    fresh_weight = target.head.cls_score.weight.detach().clone()
    with caplog.at_level(logging.INFO, logger="fvcore.common.checkpoint"):
        LadaCheckpointer(target).load(str(tmp_path / "five_classes.pth"))

    lines = [r.getMessage() for r in caplog.records if "class head re-initialised" in r.getMessage()]
    assert lines == [
        "class head re-initialised: head.cls_score predicts 5 classes in the checkpoint and 1 "
        "in the model (MODEL.FCOS.NUM_CLASSES); its weight and bias keep their initialisation "
        "(bias from MODEL.FCOS.PRIOR_PROB), every other matching parameter is loaded"
    ]
    assert target.head.cls_score.weight.shape == (1, 64, 3, 3)
    torch.testing.assert_close(target.head.cls_score.weight, fresh_weight, rtol=0, atol=0)
    torch.testing.assert_close(target.head.cls_score.bias, torch.tensor([-4.59511985]))
    saved = source.state_dict()
    for name, value in target.state_dict().items():
        if not name.startswith("head.cls_score."):
            torch.testing.assert_close(value, saved[name], rtol=0, atol=0, msg=name)
    caplog.clear()  # a LazyConfig training names its own keys
    with caplog.at_level(logging.INFO, logger="fvcore.common.checkpoint"):
        LadaCheckpointer(target, keys=LAZY_KEYS).load(str(tmp_path / "five_classes.pth"))
    assert [r.getMessage() for r in caplog.records if "re-initialised" in r.getMessage()] == [
        "class head re-initialised: head.cls_score predicts 5 classes in the checkpoint and 1 "
        "in the model (model.num_classes); its weight and bias keep their initialisation "
        "(bias from model.head.prior_prob), every other matching parameter is loaded"
    ]


def test_checkpoint_of_the_same_class_count_logs_no_reinitialisation(model, tmp_path, caplog):
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("same")
    with caplog.at_level(logging.INFO, logger="fvcore.common.checkpoint"):
        LadaCheckpointer(model).load(str(tmp_path / "same.pth"))
    assert not any("re-initialised" in r.getMessage() for r in caplog.records)


# ------------------------------------------------- inference loads (for_inference=True)


@pytest.fixture(scope="module")
def five_classes(tmp_path_factory):
    """A trained-like checkpoint of the 5-class quick model, in a run folder beside its
    config.yaml: (path, the model's state)."""
    folder = tmp_path_factory.mktemp("run")
    source = build_model(small_cfg())
    torch.save({"model": source.state_dict(), "iteration": 9}, folder / "model_final.pth")
    (folder / "config.yaml").write_text(small_cfg().dump())
    return folder / "model_final.pth", source.state_dict()


def test_an_inference_load_refuses_another_class_count(five_classes):
    """What the training load re-initialises (above) an inference load refuses: the
    model would predict from a random class head."""
    path, _ = five_classes
    model = build_model(small_cfg(**{"MODEL.FCOS.NUM_CLASSES": "1"}))
    with pytest.raises(CheckpointError) as error:
        LadaCheckpointer(model, for_inference=True).load(str(path))
    assert str(error.value) == (
        f"refused checkpoint {path} for inference: it does not fit the model of this config, "
        "which would run with freshly initialised values in place of trained ones. The "
        "checkpoint's class head (head.cls_score) predicts 5 classes, the model's 1 "
        "(MODEL.FCOS.NUM_CLASSES 1). 2 parameters of another shape: head.cls_score.weight "
        "(5x64x3x3 in the checkpoint, 1x64x3x3 in the model), head.cls_score.bias (5 in the "
        "checkpoint, 1 in the model). Load it with the config it was trained with: the run's "
        f"saved OUTPUT_DIR/config.yaml ({path.parent / 'config.yaml'}, beside the checkpoint), "
        "which holds every value the run used, the own-data recipe's too; or set "
        "`MODEL.FCOS.NUM_CLASSES 5` (the checkpoint's class count) on the command line.")


def test_an_inference_load_names_the_lazy_configs_keys(five_classes, tmp_path):
    from lada.engine import LAZY_KEYS

    path, state = five_classes
    elsewhere = tmp_path / "weights.pth"  # no config.yaml beside it
    torch.save({"model": state}, elsewhere)
    model = build_model(small_cfg(**{"MODEL.FCOS.NUM_CLASSES": "2"}))
    with pytest.raises(CheckpointError) as error:
        LadaCheckpointer(model, for_inference=True, keys=LAZY_KEYS).load(str(elsewhere))
    message = str(error.value)
    assert "predicts 5 classes, the model's 2 (model.num_classes 2)" in message
    assert message.endswith(
        "Load it with the config it was trained with: the run's saved "
        "train.output_dir/config.yaml, which holds every value the run used; or set "
        "`model.num_classes=5` (the checkpoint's class count) on the command line.")


def test_an_inference_load_refuses_missing_and_unknown_parameters(five_classes):
    """A model with RFA (four offset parameters) from a checkpoint without: missing; the
    other way round: parameters the model would leave out. The first three are named."""
    path, state = five_classes
    rfa = build_model(small_cfg(**{"MODEL.FCOS.RFA": "True"}))
    with pytest.raises(CheckpointError) as error:
        LadaCheckpointer(rfa, for_inference=True).load(str(path))
    assert ("which would run with freshly initialised values in place of trained ones. 4 "
            "parameters of the model missing from the checkpoint: "
            "head.cls_subnet.0.offset.weight, head.cls_subnet.0.offset.bias, "
            "head.bbox_subnet.0.offset.weight and 1 more. Load it with the config it was "
            "trained with") in str(error.value)
    assert "class head" not in str(error.value) and "NUM_CLASSES" not in str(error.value)

    folder = path.parent.parent / "rfa_run"
    folder.mkdir(exist_ok=True)
    torch.save({"model": rfa.state_dict()}, folder / "model_final.pth")
    with pytest.raises(CheckpointError) as error:
        LadaCheckpointer(build_model(small_cfg()), for_inference=True).load(
            str(folder / "model_final.pth"))
    assert ("which would run without parts of the trained model. 4 parameters of the "
            "checkpoint the model does not have: head.cls_subnet.0.offset.weight") in str(error.value)


def test_an_inference_load_ignores_the_training_losses_state(five_classes, tmp_path):
    """The losses' running normaliser (a buffer, so that a resume continues it) is not
    used by inference: a checkpoint without it, or a model without it, still loads."""
    _, state = five_classes
    without = {k: v for k, v in state.items() if not k.startswith("loss.")}
    assert len(without) == len(state) - 1
    torch.save({"model": without}, tmp_path / "no_loss_state.pth")
    model = build_model(small_cfg())
    LadaCheckpointer(model, for_inference=True).load(str(tmp_path / "no_loss_state.pth"))
    for name, value in model.state_dict().items():
        if name in without:
            torch.testing.assert_close(value, without[name], rtol=0, atol=0, msg=name)


def test_an_inference_load_of_a_missing_file_says_so_in_one_line(tmp_path):
    model = build_model(small_cfg())
    with pytest.raises(CheckpointError, match=f"^cannot load checkpoint {tmp_path / 'no.pth'}: no such file$"):
        LadaCheckpointer(model, for_inference=True).load(str(tmp_path / "no.pth"))


def test_a_resume_for_inference_checks_the_last_checkpoint(tmp_path):
    """--eval-only --resume loads the folder's newest checkpoint: checked the same way."""
    DetectionCheckpointer(build_model(small_cfg()), save_dir=str(tmp_path)).save("model_0000004", iteration=4)
    model = build_model(small_cfg(**{"MODEL.FCOS.NUM_CLASSES": "3"}))
    with pytest.raises(CheckpointError, match=f"refused checkpoint {tmp_path / 'model_0000004.pth'} "
                                              "for inference: .* predicts 5 classes, the model's 3"):
        LadaCheckpointer(model, save_dir=str(tmp_path), for_inference=True).resume_or_load("", resume=True)
