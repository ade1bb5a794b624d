"""The LazyConfig configs (configs/lazy) are their yaml twins: same model (modules,
parameter shapes, frozen parameters, matcher and loss settings, losses on a fixed batch
with the same weights), same data, optimizer and schedule; and
tools/lazyconfig_train_net.py trains and evaluates one."""
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, make_batch
from detectron2.config import get_cfg, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.utils.events import EventStorage

from lada.config import add_lada_config
from lada.data import DatasetError, ReadCheckedDatasetMapper
from lada.data.synthetic import SyntheticSpec, generate
from lada.engine import AutocastTrainer
from lada.engine.lazy import build_step, load_lazy_config, register_datasets, warmup_multistep

LAZY = REPO / "configs/lazy"
# every LazyConfig config of the project and its yaml twin, read from configs/lazy
QUICK = sorted(path.stem[len("quick_"):] for path in LAZY.glob("quick_*.py"))
COCO = sorted(path.stem[:-len("_R_50_FPN_1x")] for path in LAZY.glob("*_R_50_FPN_1x.py"))
# (lazy config, yaml twin)
PAIRS = [(f"quick_{m}.py", f"quick/{m}.yaml") for m in QUICK] + [
    (f"{m}_R_50_FPN_1x.py", f"COCO-Detection/{m}_R_50_FPN_1x.yaml") for m in COCO
]
INFERENCE_SETTINGS = ("num_classes", "max_iter", "test_score_thresh", "test_score_thresh_on",
                      "test_score", "test_topk_candidates", "test_nms_thresh",
                      "max_detections_per_image")


def _yaml_cfg(name):
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs" / name))
    return cfg


def _settings(obj):
    """The public attributes of a matcher or loss module: its hyperparameters."""
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and k != "training"}


def _augmentations(mapper):
    """The mapper's augmentations as (type, settings), sequences as lists."""
    def plain(value):
        return list(value) if isinstance(value, (list, tuple)) else value

    return [(type(a), {k: plain(v) for k, v in vars(a).items()}) for a in mapper.augmentations.augs]


def _models(lazy_name, yaml_name):
    yaml_cfg = _yaml_cfg(yaml_name)
    yaml_cfg.MODEL.DEVICE = "cpu"  # the COCO configs' cuda; the device is compared elsewhere
    lazy_cfg = load_lazy_config(str(LAZY / lazy_name))
    return instantiate(lazy_cfg.model), build_model(yaml_cfg), lazy_cfg, yaml_cfg


@pytest.mark.parametrize("lazy_name, yaml_name", PAIRS, ids=[p[0] for p in PAIRS])
def test_lazy_config_builds_the_model_of_its_yaml_twin(lazy_name, yaml_name):
    lazy, twin, _, _ = _models(lazy_name, yaml_name)
    assert repr(lazy) == repr(twin)  # every module with its sizes, norms, strides
    assert [(n, p.shape, p.requires_grad) for n, p in lazy.named_parameters()] == [
        (n, p.shape, p.requires_grad) for n, p in twin.named_parameters()
    ]
    assert type(lazy.matcher) is type(twin.matcher)
    assert _settings(lazy.matcher) == _settings(twin.matcher)
    assert type(lazy.loss) is type(twin.loss)
    assert _settings(lazy.loss) == _settings(twin.loss)
    assert {k: getattr(lazy, k) for k in INFERENCE_SETTINGS} == {
        k: getattr(twin, k) for k in INFERENCE_SETTINGS
    }
    assert torch.equal(lazy.pixel_mean, twin.pixel_mean)
    assert torch.equal(lazy.pixel_std, twin.pixel_std)
    assert lazy.anchor_generator.offset == twin.anchor_generator.offset


@pytest.mark.parametrize("method", ["lada", "dw", "atss", "paa", "tal", "dsl"])
def test_lazy_quick_config_gives_the_losses_of_its_yaml_twin(method):
    lazy, twin, _, _ = _models(f"quick_{method}.py", f"quick/{method}.yaml")
    for parameter in lazy.head.parameters():  # away from the initial, near-zero outputs
        parameter.data.add_(torch.randn_like(parameter) * 0.02)
    twin.load_state_dict(lazy.state_dict())
    lazy.train(), twin.train()
    for step in range(2):  # the second step sees the loss normalisers' state too
        torch.manual_seed(step)
        batch = make_batch([3, 0, 6])
        with EventStorage(step):
            expected = twin(batch)
            losses = lazy(batch)
        assert set(losses) == set(expected)
        for name, value in expected.items():
            assert torch.isfinite(value)
            torch.testing.assert_close(losses[name], value, rtol=0, atol=0)


@pytest.mark.parametrize("lazy_name, yaml_name", PAIRS, ids=[p[0] for p in PAIRS])
def test_lazy_config_has_the_data_optimizer_and_schedule_of_its_yaml_twin(lazy_name, yaml_name):
    yaml_cfg = _yaml_cfg(yaml_name)
    cfg = load_lazy_config(str(LAZY / lazy_name))
    train, data = cfg.train, cfg.dataloader
    solver = yaml_cfg.SOLVER
    assert (train.max_iter, train.checkpointer.period, data.train.total_batch_size) == (
        solver.MAX_ITER, solver.CHECKPOINT_PERIOD, solver.IMS_PER_BATCH
    )
    assert (train.output_dir, train.init_checkpoint, train.device, train.seed) == (
        yaml_cfg.OUTPUT_DIR, yaml_cfg.MODEL.WEIGHTS, yaml_cfg.MODEL.DEVICE, yaml_cfg.SEED
    )
    assert list(data.train.dataset.names) == list(yaml_cfg.DATASETS.TRAIN)
    assert list(data.test.dataset.names) == list(yaml_cfg.DATASETS.TEST)
    assert data.train.dataset.filter_empty == yaml_cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    assert data.train.num_workers == yaml_cfg.DATALOADER.NUM_WORKERS
    registered = [list(e) for e in yaml_cfg.DATASETS.REGISTER_COCO]
    assert [list(e) for e in data.register_coco] == registered
    assert list(data.evaluator.aspect_ratio_edges) == list(yaml_cfg.TEST.ASPECT_RATIO_EDGES)
    assert train.eval_period == yaml_cfg.TEST.EVAL_PERIOD
    policy = yaml_cfg.DATASETS.BAD_BOX_POLICY
    assert {k.upper(): v for k, v in data.checks.box_policy.items()} == dict(policy)
    for is_train, lazy_mapper in ((True, data.train.mapper), (False, data.test.mapper)):
        mapper, twin = instantiate(lazy_mapper), ReadCheckedDatasetMapper(yaml_cfg, is_train)
        assert _augmentations(mapper) == _augmentations(twin)
        assert (mapper.image_format, mapper.dataset_names, mapper.skip_unreadable) == (
            twin.image_format, twin.dataset_names, twin.skip_unreadable
        )

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GroupNorm(2, 4))
    cfg.optimizer.params.model = model
    optimizer, twin = instantiate(cfg.optimizer), build_optimizer(yaml_cfg, model)
    assert type(optimizer) is type(twin)
    hyper = ("lr", "weight_decay", "momentum", "nesterov")
    assert [[g[k] for k in hyper] for g in optimizer.param_groups] == [
        [g[k] for k in hyper] for g in twin.param_groups
    ]
    multiplier = instantiate(cfg.lr_multiplier)
    twin_multiplier = build_lr_scheduler(yaml_cfg, twin)._multiplier
    for it in sorted({0, 1, 99, 100, 499, 500, 999, 1000, *solver.STEPS, solver.MAX_ITER - 1}):
        for step in (it - 1, it):
            if 0 <= step < solver.MAX_ITER:
                where = step / solver.MAX_ITER
                assert multiplier(where) == pytest.approx(twin_multiplier(where), rel=1e-12)


def test_warmup_multistep_refuses_steps_outside_the_schedule():
    schedule = warmup_multistep(max_iter=100, steps=[50, 80], warmup_iters=10)
    assert schedule(0.0) == pytest.approx(0.001)
    assert schedule(0.5) == pytest.approx(0.1)  # at the first step, after the warm-up
    assert schedule(0.8) == pytest.approx(0.01)
    outside = (r"lr_multiplier.steps must increase within \(0, train.max_iter = 100\), "
               r"got \[50, 120\]")
    with pytest.raises(ValueError, match=outside):
        warmup_multistep(max_iter=100, steps=[50, 120], warmup_iters=10)
    with pytest.raises(ValueError, match="must increase"):
        warmup_multistep(max_iter=100, steps=[80, 50], warmup_iters=10)


def test_train_amp_chooses_the_step():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(*overrides):
        cfg = load_lazy_config(str(LAZY / "quick_lada.py"), overrides)
        return build_step(cfg, model, [], optimizer)

    assert type(step()) is SimpleTrainer
    bfloat16 = step("train.amp.enabled=True")
    assert type(bfloat16) is AutocastTrainer
    assert (bfloat16.device_type, bfloat16.dtype) == ("cpu", torch.bfloat16)
    with pytest.raises(ValueError, match="train.amp.precision float16 needs train.device cuda"):
        step("train.amp.enabled=True", "train.amp.precision=float16")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("tiny"), SyntheticSpec(num_train=8, num_val=4))


def _dataset_args(tiny):
    return [
        "--dataset", "tiny_train", str(tiny["train"]), str(tiny["train_images"]),
        "--dataset", "tiny_val", str(tiny["val"]), str(tiny["val_images"]),
    ]


def test_data_checks_are_put_on_the_lazy_config_datasets(tiny):
    cfg = load_lazy_config(str(LAZY / "quick_lada.py"), [
        "dataloader.register_coco=[]", "dataloader.train.dataset.names=[tiny_train]",
        "dataloader.test.dataset.names=[tiny_val]", "model.num_classes=2",
    ])
    args = type("Args", (), {"dataset": [_dataset_args(tiny)[i:i + 3] for i in (1, 5)]})()
    register_datasets(cfg, args)
    try:
        with pytest.raises(DatasetError, match="of a class the model does not have"):
            DatasetCatalog.get("tiny_train")
    finally:
        for name in ("tiny_train", "tiny_val"):
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)  # its json_file too, which later tests register anew


def _lazyconfig_train_net(tiny, output_dir, *overrides, flags=()):
    command = [
        sys.executable, str(REPO / "tools/lazyconfig_train_net.py"),
        "--config-file", str(LAZY / "quick_lada.py"), *_dataset_args(tiny), *flags,
        "dataloader.register_coco=[]",
        "dataloader.train.dataset.names=[tiny_train]",
        "dataloader.test.dataset.names=[tiny_val]",
        "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
        "dataloader.train.total_batch_size=2",
        "train.max_iter=2", "lr_multiplier.steps=[1]", "lr_multiplier.warmup_iters=1",
        "model.test_score_thresh=0.0",
        f"train.output_dir={output_dir}",
        *overrides,  # after the defaults above: a later override wins
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_lazyconfig_train_net_trains_two_iterations_evaluates_and_resumes(tiny, tmp_path):
    out = tmp_path / "run"
    log = _lazyconfig_train_net(tiny, out)
    assert "Starting training from iteration 0" in log and "holds an earlier run" not in log
    assert "Evaluation results for bbox by aspect ratio" in log
    assert "GT boxes of the first 2 iterations got no positive from 'lada'" in log
    assert "but the detector is not" not in log
    lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [line["iteration"] for line in lines if "total_loss" in line] == [1]
    assert {"bbox/AP", "bbox/AP@ar<3", "bbox/AP@ar>=3"} <= set(lines[-1])
    checkpoint = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["iteration"] == 1
    assert {"optimizer", "hooks"} <= set(checkpoint["trainer"])  # for --resume
    trained = json.loads((out / "inference/tiny_val/coco_instances_results.json").read_text())
    assert len(trained) > 0

    # the run's saved config alone (its --dataset registrations), from another folder:
    # written beside the run
    (out / "eval_results.json").unlink()  # the training run's, of its final evaluation
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([
        sys.executable, str(REPO / "tools/lazyconfig_train_net.py"), "--config-file",
        str(out / "config.yaml"), "--eval-only",
        f"train.init_checkpoint={out / 'model_final.pth'}",
    ], cwd=elsewhere, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(elsewhere.iterdir()) == []
    again = json.loads((out / "inference/tiny_val/coco_instances_results.json").read_text())
    assert again == trained
    results = json.loads((out / "eval_results.json").read_text())
    assert results["weights"] == str(out / "model_final.pth")
    assert results["metrics"]["bbox/AP"] == pytest.approx(lines[-1]["bbox/AP"], nan_ok=True)

    # a test setting of another detector (in the final evaluation only): the warning
    log = _lazyconfig_train_net(tiny, out, "train.max_iter=3", "model.test_score=product",
                                flags=["--resume"])
    assert "Starting training from iteration 2" in log
    assert "model.test_score 'product' (lada: 'geometric_mean')" in log
    resumed = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)
    assert resumed["iteration"] == 2
    assert "holds an earlier run" not in log  # --resume continues it

    # a new training into the folder, without --resume: warned that it replaces the run
    log = _lazyconfig_train_net(tiny, out)
    assert f"OUTPUT_DIR {out} holds an earlier run (model_final.pth, last_checkpoint, " in log
