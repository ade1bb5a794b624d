"""LadaFCOS on a ResNet-50-FPN with P3-P7 (P6/P7 from P5) for COCO's 80 classes: the
model of configs/Base-LADA-FCOS.yaml, with detectron2's FCOS matching and its dense loss
(centerness branch, focal + GIoU, EMA normaliser). The method configs replace
``model.matcher`` and set the head and loss keywords their yaml twin sets."""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import FPN, BasicStem, ResNet
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from lada.matchers.methods.fcos import FCOSMatcher
from lada.modeling.head import FCOSHead
from lada.modeling.losses import DenseDetectionLoss
from lada.modeling.meta_arch import LadaFCOS

model = L(LadaFCOS)(
    # detectron2's ImageNet R-50 (MSRA, Caffe2 style): frozen BN, stem and res2 frozen
    backbone=L(FPN)(
        bottom_up=L(ResNet)(
            stem=L(BasicStem)(in_channels=3, out_channels=64, norm="FrozenBN"),
            stages=L(ResNet.make_default_stages)(depth=50, stride_in_1x1=True, norm="FrozenBN"),
            out_features=["res3", "res4", "res5"],
            freeze_at=2,
        ),
        in_features=["res3", "res4", "res5"],
        out_channels=256,
        norm="",
        top_block=L(LastLevelP6P7)(
            in_channels="${..out_channels}", out_channels="${..out_channels}", in_feature="p5"
        ),
    ),
    head=L(FCOSHead)(
        input_shape=[ShapeSpec(channels=256)] * 5,  # p3-p7, the FPN's channels
        num_classes="${..num_classes}",
        num_convs=4,
        norm="GN",
        prior_prob=0.01,
        box_activation="linear",
        box_bias_init=0.0,
        rfa=False,
        box_refine=False,
        anchor_offset="${..anchor_offset}",
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    matcher=L(FCOSMatcher)(center_sampling_radius=1.5),
    loss=L(DenseDetectionLoss)(
        num_classes="${..num_classes}",
        aux_branch="centerness",
        cls_loss="focal",
        box_weight=1.0,
        aux_weight=1.0,
        box_weighting="none",
        normalizer="ema",
    ),
    num_classes=80,
    anchor_offset=0.5,  # one anchor point per cell, at its centre
    max_iter="${train.max_iter}",  # the schedule, for matchers that depend on progress
    test_score_thresh=0.05,
    test_score_thresh_on="combined",
    test_score="geometric_mean",
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    max_detections_per_image=100,
    pixel_mean=[103.530, 116.280, 123.675],  # BGR, 0-255
    pixel_std=[1.0, 1.0, 1.0],
)
