"""Mixed precision: SOLVER.AMP.PRECISION per device; bfloat16 autocast on the CPU for
every quick config (float32 matching and losses, finite losses, first-step losses close
to float32's); the step's state in checkpoints."""
import copy
import math

import pytest
import torch
from conftest import REPO, small_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from lada.data import install_dataset_checks, register_coco_datasets
from lada.data.synthetic import SyntheticSpec, generate
from lada.engine import AutocastTrainer, Trainer, amp_dtype, build_argument_parser, setup_cfg

# The own_data_<method> configs are left out: without the recipe (not applied here) each
# trains its quick method's model (tests/modeling/test_presets.py checks MODEL.FCOS is the
# quick config's), so they would repeat those runs.
QUICK_CONFIGS = sorted(
    path.stem for path in (REPO / "configs/quick").glob("*.yaml")
    if not path.stem.startswith(("Base", "own_data"))
)
# Tolerances of bfloat16's first-step losses against float32's, relative (absolute 1e-3 for
# losses near 0). bfloat16 keeps 8 significant bits in every conv of backbone and head.
# With the float32 run's assignment replayed, that alone moved the losses by at most 0.7 %
# (12 batches of 4 synthetic images per quick config). Each precision with its own
# assignment: matchers that read the predictions (aps, ciou_atss, lada, paa) may pick
# other positives from bfloat16 predictions, which moved the losses by up to 5.3 %
# (ciou_atss); with the others (atss, fcos) 0.07 %.
SAME_ASSIGNMENT_RTOL = 0.02
OWN_ASSIGNMENT_RTOL = 0.10


def _amp_cfg(device="cpu", precision="auto", enabled=True):
    cfg = small_cfg()
    cfg.MODEL.DEVICE = device
    cfg.SOLVER.AMP.ENABLED = enabled
    cfg.SOLVER.AMP.PRECISION = precision
    return cfg


def test_amp_off_has_no_dtype():
    assert amp_dtype(_amp_cfg(enabled=False)) is None


@pytest.mark.parametrize("precision", ["auto", "bfloat16"])
def test_cpu_autocasts_to_bfloat16(precision):
    assert amp_dtype(_amp_cfg(precision=precision)) == torch.bfloat16


def test_cpu_refuses_float16():
    with pytest.raises(ValueError, match="SOLVER.AMP.PRECISION float16 needs MODEL.DEVICE cuda"):
        amp_dtype(_amp_cfg(precision="float16"))


def test_unknown_precision_and_device():
    with pytest.raises(ValueError, match="SOLVER.AMP.PRECISION must be one of .* got 'half'"):
        amp_dtype(_amp_cfg(precision="half"))
    with pytest.raises(ValueError, match="supports MODEL.DEVICE cuda and cpu, got 'meta'"):
        amp_dtype(_amp_cfg(device="meta"))


def test_cuda_precisions(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA device is available"):
        amp_dtype(_amp_cfg(device="cuda"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert amp_dtype(_amp_cfg(device="cuda")) == torch.float16  # detectron2's AMPTrainer
    assert amp_dtype(_amp_cfg(device="cuda:1", precision="float16")) == torch.float16
    with pytest.raises(ValueError, match="does not support bfloat16"):
        amp_dtype(_amp_cfg(device="cuda", precision="bfloat16"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert amp_dtype(_amp_cfg(device="cuda", precision="bfloat16")) == torch.bfloat16


def test_setup_stops_on_a_precision_the_device_does_not_allow(tmp_path):
    args = build_argument_parser().parse_args([
        "--config-file", str(REPO / "configs/quick/lada.yaml"),
        "SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", "float16",
        "OUTPUT_DIR", str(tmp_path),
    ])
    with pytest.raises(SystemExit, match="float16 needs MODEL.DEVICE cuda"):
        setup_cfg(args)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    paths = generate(tmp_path_factory.mktemp("tiny"), SyntheticSpec(num_train=6, num_val=0))
    register_coco_datasets([["amp_tiny_train", str(paths["train"]), str(paths["train_images"])]])
    return paths


def _train_cfg(config: str, output_dir, **overrides):
    cfg = small_cfg()
    cfg.merge_from_file(str(REPO / f"configs/quick/{config}.yaml"))
    cfg.merge_from_list([
        "DATASETS.REGISTER_COCO", [], "DATASETS.TRAIN", ("amp_tiny_train",), "DATASETS.TEST", (),
        "DATALOADER.NUM_WORKERS", 0, "SOLVER.IMS_PER_BATCH", 1, "SOLVER.MAX_ITER", 3,
        "SOLVER.AMP.ENABLED", True, "OUTPUT_DIR", str(output_dir),
        *[item for pair in overrides.items() for item in pair],
    ])
    install_dataset_checks(cfg)
    return cfg


class _Recorder:
    """Records, under whatever autocast state the trainer runs, the dtypes of the head's
    outputs, of what the matcher and the loss module receive, and whether autocast is on
    there."""

    def __init__(self, model):
        self.head, self.matcher, self.loss, self.autocast_in = set(), set(), set(), set()
        model.head.register_forward_hook(self._head)
        model.loss.register_forward_pre_hook(self._loss)
        matcher = model.matcher

        def recording_matcher(inputs):
            self.matcher.update(
                x.dtype for x in (inputs.pred_logits, inputs.pred_boxes, inputs.pred_aux,
                                  inputs.points, inputs.strides) if x is not None
            )
            self.autocast_in.add(("matcher", torch.is_autocast_enabled("cpu")))
            return matcher(inputs)

        model.matcher = recording_matcher

    def _head(self, module, args, outputs):
        self.head.update(x.dtype for per_level in outputs for x in per_level)

    def _loss(self, module, args):
        self.loss.update(x.dtype for x in args if torch.is_tensor(x) and x.is_floating_point())
        self.autocast_in.add(("loss", torch.is_autocast_enabled("cpu")))


@pytest.mark.parametrize("config", QUICK_CONFIGS)
def test_bfloat16_autocast_trains_every_quick_config(config, tiny, tmp_path):
    trainer = Trainer(_train_cfg(config, tmp_path))
    assert isinstance(trainer._trainer, AutocastTrainer)
    assert (trainer._trainer.device_type, trainer._trainer.dtype) == ("cpu", torch.bfloat16)
    recorder = _Recorder(trainer.model)
    trainer.train()

    assert recorder.head == {torch.bfloat16}  # autocast is on for the network...
    assert recorder.matcher == {torch.float32}  # ...and off for matching and losses
    assert recorder.loss == {torch.float32}
    assert recorder.autocast_in == {("matcher", False), ("loss", False)}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())

    storage = trainer.storage
    names = [name for name in storage.histories() if name.startswith("loss_")]
    assert len(names) == (2 if trainer.cfg.MODEL.FCOS.AUX_BRANCH == "none" else 3)  # + aux
    for name in names:
        values = [value for value, _ in storage.history(name).values()]
        assert len(values) == 3 and all(math.isfinite(v) for v in values), (name, values)


@pytest.mark.parametrize("config", QUICK_CONFIGS)
def test_bfloat16_first_step_losses_are_close_to_float32(config, tiny, tmp_path):
    """The losses of a first step (initial weights, the first 4 training images without
    flip) under bfloat16 autocast and in float32: each with its own assignment, and with
    the float32 assignment replayed under bfloat16."""
    cfg = _train_cfg(config, tmp_path, **{"INPUT.RANDOM_FLIP": "none"})
    model = build_model(cfg)
    mapper = DatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in DatasetCatalog.get("amp_tiny_train")[:4]]

    def first_step(autocast, replay=None):
        fresh = copy.deepcopy(model)  # the EMA normaliser (fcos) updates once in each
        matcher, matches = fresh.matcher, []

        def recording_matcher(inputs):
            matches.append(matcher(inputs) if replay is None else replay)
            return matches[-1]

        fresh.matcher = recording_matcher
        with EventStorage(0), torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            losses = {name: value.item() for name, value in fresh(batch).items()}
        return losses, matches[0]

    reference, match = first_step(False)
    assert any(value > 0.1 for value in reference.values())
    for losses, rtol in ((first_step(True)[0], OWN_ASSIGNMENT_RTOL),
                         (first_step(True, replay=match)[0], SAME_ASSIGNMENT_RTOL)):
        assert losses.keys() == reference.keys()
        for name, value in reference.items():
            assert losses[name] == pytest.approx(value, rel=rtol, abs=1e-3), (name, rtol)


def test_checkpoints_hold_the_optimizer_state(tiny, tmp_path):
    """v0.6's DefaultTrainer saves neither the optimizer nor a grad scaler: ``--resume``
    restarted SGD's momentum. The project's Trainer saves its step's state."""
    trained = Trainer(_train_cfg("atss", tmp_path, **{"SOLVER.MAX_ITER": 1}))
    trained.train()
    momentum = trained.optimizer.state_dict()["state"]
    assert momentum

    resumed = Trainer(_train_cfg("atss", tmp_path, **{"SOLVER.MAX_ITER": 2}))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 1
    restored = resumed.optimizer.state_dict()["state"]
    assert restored.keys() == momentum.keys()
    for key, state in momentum.items():
        torch.testing.assert_close(restored[key]["momentum_buffer"], state["momentum_buffer"])


@pytest.mark.cuda
@pytest.mark.parametrize("config", QUICK_CONFIGS)
def test_float16_step_on_cuda_of_every_quick_config(config, tiny, tmp_path):
    """One float16 AMP step on CUDA through the trainer (detectron2's AMPTrainer, gradient
    scaling) gives finite losses; one float16 autocast forward and unscaled backward of the
    same model on the first images gives finite losses and finite, not all zero, gradients
    (an overflow in float16 would show there as inf or nan)."""
    from detectron2.engine import AMPTrainer

    cfg = _train_cfg(config, tmp_path, **{"MODEL.DEVICE": "cuda", "SOLVER.AMP.PRECISION": "float16",
                                         "SOLVER.MAX_ITER": 1})
    trainer = Trainer(cfg)
    assert type(trainer._trainer) is AMPTrainer
    trainer.train()
    names = [name for name in trainer.storage.histories() if name.startswith("loss_")]
    assert len(names) == 3
    for name in names:
        values = [value for value, _ in trainer.storage.history(name).values()]
        assert len(values) == 1 and all(math.isfinite(v) for v in values), (name, values)

    model = build_model(cfg)
    mapper = DatasetMapper(cfg, is_train=True)
    batch = [mapper(d) for d in DatasetCatalog.get("amp_tiny_train")[:2]]
    with EventStorage(0), torch.autocast("cuda", torch.float16):
        losses = model(batch)
    assert all(torch.isfinite(value) for value in losses.values()), losses
    sum(losses.values()).backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
    assert any(g.abs().sum() > 0 for g in gradients)
