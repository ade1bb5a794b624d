"""torchvision ResNet weights into the backbone (tools/convert_torchvision_resnet.py): every
backbone key loaded and none left over, and the converted backbone computes torchvision's
features. torchvision's random-init state dicts stand in for the ImageNet ones (no
download); their BatchNorm statistics are randomised so that a swapped norm shows."""
import importlib.util

import pytest
import torch
import torchvision
from conftest import REPO
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone import build_resnet_backbone

from lada.config import add_lada_config
from lada.engine import LadaCheckpointer
from lada.modeling.torchvision_resnet import BOTTOM_UP, convert_torchvision_resnet

R18_CONFIG = REPO / "configs/quick/own_data_R_18_imagenet.yaml"
# torchvision's ResNet-50 conventions on the R-18 config: depth, channels, stride in the 3x3
R50_OPTS = ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES2_OUT_CHANNELS", "256",
            "MODEL.RESNETS.STRIDE_IN_1X1", "False"]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torchvision_state_dict(depth: int) -> dict:
    torch.manual_seed(depth)
    state = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
    for key, value in state.items():
        if key.endswith(("running_mean", "bias")) and value.dim() == 1:
            value.normal_(0, 0.5)
        elif key.endswith(("running_var", "weight")) and value.dim() == 1:
            value.uniform_(0.5, 1.5)
    return state


def model_of(config, opts=()):
    cfg = add_lada_config(get_cfg())
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(list(opts))
    return build_model(cfg).eval()


@pytest.mark.parametrize("depth, opts", [(18, []), (50, R50_OPTS)])
def test_converted_weights_are_every_backbone_weight_and_give_torchvisions_features(
        tmp_path, depth, opts):
    source = torchvision_state_dict(depth)
    torch.save(source, tmp_path / "torchvision.pth")
    tool = load_tool("convert_torchvision_resnet")
    tool.main(["--input", str(tmp_path / "torchvision.pth"),
               "--output", str(tmp_path / "converted.pth"),
               "--config-file", str(R18_CONFIG), *opts])

    model = model_of(R18_CONFIG, opts)
    backbone_keys = {k for k in model.state_dict() if k.startswith(BOTTOM_UP)}
    written = torch.load(tmp_path / "converted.pth", weights_only=True)["model"]
    assert set(written) == backbone_keys  # no missing, no unexpected backbone key
    # every torchvision tensor is accounted for: renamed, or the classifier / a counter
    dropped = {k for k in source if k.startswith("fc.") or k.endswith("num_batches_tracked")}
    assert len(written) == len(source) - len(dropped)

    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(BOTTOM_UP)}
    LadaCheckpointer(model).load(str(tmp_path / "converted.pth"))
    state = model.state_dict()
    assert all(torch.equal(state[k], written[k]) for k in backbone_keys)
    assert all(torch.equal(state[k], v) for k, v in before.items())  # FPN and head untouched

    # the reference: torchvision's own forward pass up to layer4, in eval mode
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    reference.load_state_dict(source)
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(image))))
        expected = {}
        for stage in (1, 2, 3, 4):
            x = getattr(reference, f"layer{stage}")(x)
            expected[f"res{stage + 1}"] = x
        features = model.backbone.bottom_up(image)
    for name in ("res3", "res4", "res5"):
        torch.testing.assert_close(features[name], expected[name], rtol=1e-4, atol=1e-4)


def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_keys(tmp_path):
    tool = load_tool("convert_torchvision_resnet")
    # ResNet-34 has 3-4-6-3 basic blocks, ResNet-18 2-2-2-2: 8 blocks too many, each of
    # 2 convolution weights and 2 norms of 4 tensors
    torch.save(torchvision_state_dict(34), tmp_path / "r34.pth")
    with pytest.raises(SystemExit, match=r"does not fit the model of .*DEPTH 18.*\n  80 backbone "
                                         r"key\(s\) not in the model, "
                                         r"e\.g\. backbone\.bottom_up\.res2\.2\."):
        tool.main(["--input", str(tmp_path / "r34.pth"), "--output", str(tmp_path / "out.pth")])
    assert not (tmp_path / "out.pth").exists()

    torch.save({"module." + k: v for k, v in torchvision_state_dict(18).items()},
               tmp_path / "wrapped.pth")
    with pytest.raises(SystemExit,
                       match="not a torchvision ResNet state dict.*module.conv1.weight"):
        tool.main(["--input", str(tmp_path / "wrapped.pth"), "--output", str(tmp_path / "out.pth")])

    torch.save(torchvision_state_dict(18), tmp_path / "r18.pth")
    with pytest.raises(SystemExit, match="(?s)INPUT.FORMAT is BGR.*MODEL.PIXEL_STD"):
        tool.main(["--input", str(tmp_path / "r18.pth"), "--output", str(tmp_path / "out.pth"),
                   "INPUT.FORMAT", "BGR", "MODEL.PIXEL_STD", "[1.0, 1.0, 1.0]"])
    with pytest.raises(SystemExit, match="STRIDE_IN_1X1 is True"):
        tool.main(["--input", str(tmp_path / "r18.pth"), "--output", str(tmp_path / "out.pth"),
                   *R50_OPTS[:4]])


def test_keys_are_renamed_as_detectron2_names_them():
    state = {"conv1.weight": torch.zeros(1), "bn1.running_var": torch.zeros(1),
             "layer1.0.bn2.bias": torch.zeros(1), "layer3.1.conv3.weight": torch.zeros(1),
             "layer4.0.downsample.0.weight": torch.zeros(1),
             "layer4.0.downsample.1.running_mean": torch.zeros(1),
             "layer2.0.bn1.num_batches_tracked": torch.zeros(1), "fc.bias": torch.zeros(1)}
    assert sorted(convert_torchvision_resnet(state)) == sorted(BOTTOM_UP + k for k in [
        "stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.conv2.norm.bias",
        "res4.1.conv3.weight", "res5.0.shortcut.weight", "res5.0.shortcut.norm.running_mean"])


def test_r50_config_is_the_backbone_detectron2_loads_its_imagenet_r50_into():
    """own_data_R_50_imagenet.yaml starts from the file the COCO configs start from; its
    bottom-up must be theirs (keys, shapes, frozen stages, Caffe2 input conventions), which
    detectron2's checkpointer fills from MSRA's names."""
    own = add_lada_config(get_cfg())
    own.merge_from_file(str(REPO / "configs/quick/own_data_R_50_imagenet.yaml"))
    coco = add_lada_config(get_cfg())
    coco.merge_from_file(str(REPO / "configs/COCO-Detection/lada_R_50_FPN_1x.yaml"))
    assert own.MODEL.WEIGHTS == coco.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    for key in ("PIXEL_MEAN", "PIXEL_STD", "RESNETS", "BACKBONE"):
        assert own.MODEL[key] == coco.MODEL[key], key
    assert own.INPUT.FORMAT == coco.INPUT.FORMAT == "BGR"
    shapes = [{k: v.shape for k, v in
               build_resnet_backbone(cfg, ShapeSpec(channels=3)).state_dict().items()}
              for cfg in (own, coco)]
    # the stem, 16 blocks of 3 convolutions and 4 shortcuts = 53 convolutions, each a
    # weight and 4 FrozenBN tensors
    assert shapes[0] == shapes[1] and len(shapes[0]) == 53 * 5
