"""CPU-sized training on the embedded synthetic dataset (datasets/make_synthetic.py), as
configs/quick/Base-Quick.yaml: its 128 px images at 168 px, a ResNet-18-FPN with 64
channels and GroupNorm trained from scratch, 2-conv towers, 407 iterations of 16 images,
anchors of 3.99 strides for the matchers that have them (:data:`ANCHOR_SCALE`; how these
were derived from the data: the yaml's comment)."""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.modeling.backbone.resnet import BasicBlock

from .data import dataloader
from .model import model
from .optim import optimizer
from .schedule import lr_multiplier, train

# The anchor_scale of the quick configs' matchers with anchors (atss, ciou_atss, paa, lada,
# tal's warm-up):
# MODEL.MATCHER.<NAME>.ANCHOR_SCALE of configs/quick/Base-Quick.yaml.
ANCHOR_SCALE = 3.99

# ResNet-18 with a 32-channel stem: stages res2-res5 of 2 basic blocks, 64 -> 512 channels
model.backbone.bottom_up = L(ResNet)(
    stem=L(BasicStem)(in_channels=3, out_channels=32, norm="GN"),
    stages=[
        L(ResNet.make_stage)(
            block_class=BasicBlock, num_blocks=2, in_channels=in_channels,
            out_channels=out_channels, stride_per_block=[stride, 1], norm="GN",
        )
        for in_channels, out_channels, stride in [
            (32, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)
        ]
    ],
    out_features=["res3", "res4", "res5"],
    freeze_at=0,
)
model.backbone.out_channels = 64
model.backbone.norm = "GN"
model.head.input_shape = [ShapeSpec(channels=64)] * 5
model.head.num_convs = 2
model.num_classes = 5
model.pixel_std = [57.375, 57.120, 58.395]

dataloader.register_coco = [
    ["synthetic_train", "datasets/synthetic/annotations/train.json", "datasets/synthetic/train"],
    ["synthetic_val", "datasets/synthetic/annotations/val.json", "datasets/synthetic/val"],
]
dataloader.train.dataset.names = ["synthetic_train"]
dataloader.train.dataset.filter_empty = False
dataloader.train.mapper.augmentations[0].short_edge_length = [168]
dataloader.train.mapper.augmentations[0].max_size = 168
dataloader.train.num_workers = 1
dataloader.test.dataset.names = ["synthetic_val"]
dataloader.test.mapper.augmentations[0].short_edge_length = 168
dataloader.test.mapper.augmentations[0].max_size = 168
dataloader.test.num_workers = 1

optimizer.lr = 0.02

lr_multiplier.steps = [320, 378]
lr_multiplier.warmup_iters = 58

train.init_checkpoint = ""
train.max_iter = 407
train.checkpointer.period = 200
train.device = "cpu"
train.seed = 0
