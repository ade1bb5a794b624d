"""Runs models of the given configs with non-finite features, one training step (forward
and backward) and one inference each, for tests/modeling/test_nonfinite_features.py.

    python tests/modeling/nonfinite_probe.py CONFIG.yaml [CONFIG.yaml ...]

For each config and each value (NaN, +inf, -inf) the backbone's outputs are replaced, on
the whole first level and at one position of the others, by that value. Prints one line
per config and value: ``done CONFIG VALUE loss=<finite|non-finite> detections=<n>`` or
``error CONFIG VALUE <exception>``. A process that dies (a segmentation fault) prints
nothing for the config it was on: the test names it.

The models are the configs' own, shrunk to run on the CPU in seconds: 64 px inputs,
random weights (``MODEL.WEIGHTS ""``), 32 FPN channels and the ResNet depth of the quick
configs for the COCO ones.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for lada

import lada  # noqa: E402,F401
from detectron2.config import get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from lada.config import add_lada_config  # noqa: E402

SIZE = 64
VALUES = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
SHRINK = [
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.RES2_OUT_CHANNELS", "64", "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.BACKBONE.FREEZE_AT", "0", "DATASETS.REGISTER_COCO", "[]",
]


def build(config: str) -> tuple[torch.nn.Module, int]:
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(config)
    cfg.merge_from_list(SHRINK)
    return build_model(cfg), cfg.MODEL.FCOS.NUM_CLASSES


def batch(num_classes: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    images = []
    for _ in range(2):
        instances = Instances((SIZE, SIZE))
        instances.gt_boxes = Boxes(torch.tensor([[4.0, 6.0, 30.0, 40.0], [20.0, 10.0, 60.0, 30.0]]))
        instances.gt_classes = torch.tensor([0, num_classes - 1])
        image = torch.randint(0, 256, (3, SIZE, SIZE), generator=generator).float()
        images.append({"image": image, "instances": instances, "height": SIZE, "width": SIZE})
    return images


def poison(value: float):
    """A forward hook for the backbone: its (N, C, H, W) outputs set to ``value`` on the
    whole first level and at one position of every other level."""
    def hook(module, inputs, features):
        features = dict(features)
        for i, name in enumerate(features):
            feature = features[name].clone()
            if i == 0:
                feature.fill_(value)
            else:
                feature[:, :, feature.shape[2] // 2, feature.shape[3] // 2] = value
            features[name] = feature
        return features
    return hook


def run(model: torch.nn.Module, num_classes: int, value: float) -> str:
    """One training step's forward and backward (no optimizer step: the weights stay) and
    one inference, with the backbone's outputs poisoned by ``value``."""
    handle = model.backbone.register_forward_hook(poison(value))
    data = batch(num_classes)
    model.train()
    with EventStorage():
        losses = sum(model(data).values())
        losses.backward()
    model.eval()
    with torch.no_grad():
        outputs = model(data)
    handle.remove()
    model.zero_grad()
    detections = sum(len(o["instances"]) for o in outputs)
    finite = "finite" if torch.isfinite(losses).item() else "non-finite"
    return f"loss={finite} detections={detections}"


def main(configs: list[str]) -> None:
    torch.set_num_threads(1)
    for config in configs:
        torch.manual_seed(0)
        model, num_classes = build(config)
        for value_name, value in VALUES.items():
            try:
                outcome = run(model, num_classes, value)
            except Exception as error:  # reported, the next config runs
                print(f"error {config} {value_name} {type(error).__name__}: {error}", flush=True)
            else:
                print(f"done {config} {value_name} {outcome}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
