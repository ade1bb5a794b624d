"""tools/analyze_model.py and lada.analysis: parameters are every parameter's elements,
and the FLOPs of the convolutions are their multiply-adds, counted here independently by
hooks on every convolution of one inference."""
import json

import torch
from conftest import REPO
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from torch import nn

from lada.analysis import model_cost
from lada.config import add_lada_config


def conv_multiply_adds(model, image):
    """Sum over every nn.Conv2d call of (output elements) x (inputs per output)."""
    total = []

    def count(module, inputs, output):
        height, width = module.kernel_size
        total.append(output.numel() * module.in_channels // module.groups * height * width)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model([{"image": image}])
    finally:
        for hook in hooks:
            hook.remove()
    return sum(total)


def test_quick_model_cost_counts_every_parameter_and_the_convolutions():
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs/quick/lada.yaml"))
    cfg.DATASETS.REGISTER_COCO = []
    model = build_model(cfg).eval()
    cost = model_cost(model, 96, 160)
    assert cost.parameters == sum(p.numel() for p in model.parameters())
    image = (torch.rand(3, 96, 160, generator=torch.Generator().manual_seed(0)) * 255)
    assert cost.flops_by_operator["conv"] == conv_multiply_adds(model, image)
    assert cost.flops >= cost.flops_by_operator["conv"] > 0
    assert set(cost.flops_by_module) == {"backbone", "head"}
    assert sum(cost.flops_by_module.values()) == cost.flops
    assert cost.activations > 0
    assert model.training is False


def test_analyze_model_tool_on_the_r50_config(tmp_path, capsys):
    from test_scripts import load_tool

    config = "configs/COCO-Detection/lada_R_50_FPN_1x.yaml"
    cost = load_tool("analyze_model").main([
        "--config-file", str(REPO / config), "--size", "64", "96", "--json", str(tmp_path / "cost.json"),
    ])
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(REPO / config))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "DATASETS.REGISTER_COCO", []])
    assert cost["parameters"] == sum(p.numel() for p in build_model(cfg).parameters())
    assert cost["flops"] > 0 and (cost["height"], cost["width"]) == (64, 96)
    assert json.loads((tmp_path / "cost.json").read_text())["parameters"] == cost["parameters"]
    printed = capsys.readouterr().out
    assert f"parameters: {cost['parameters']:,}" in printed and "FLOPs (multiply-adds):" in printed
