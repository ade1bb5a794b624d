"""Config keys of lada, added to a detectron2 config by :func:`add_lada_config`.

Defaults are the papers' hyperparameters (assignment spec, ``shared/docs``) and, for the
meta-architecture, detectron2's FCOS. Keys of the meta-architecture live under
``MODEL.FCOS``; keys of a matcher under ``MODEL.MATCHER.<NAME>``.
"""
from __future__ import annotations

from detectron2.config import CfgNode as CN

__all__ = ["add_lada_config"]


def add_lada_config(cfg: CN) -> CN:
    """Adds every lada key, with its default, to ``cfg`` in place and returns it."""
    _add_fcos_config(cfg)
    _add_matcher_config(cfg)
    _add_data_config(cfg)
    return cfg


def _add_fcos_config(cfg: CN) -> None:
    cfg.MODEL.FCOS = CN()
    cfg.MODEL.FCOS.NUM_CLASSES = 80
    cfg.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # Head: number of 3x3 conv layers in each tower, their norm ("GN", "" or any
    # detectron2 get_norm name) and the classification bias prior probability.
    cfg.MODEL.FCOS.NUM_CONVS = 4
    cfg.MODEL.FCOS.HEAD_NORM = "GN"
    cfg.MODEL.FCOS.PRIOR_PROB = 0.01
    # Learnable per-level scale on the box regression (FCOS paper). Starts at 1.0, where
    # the head equals detectron2's FCOSHead.
    cfg.MODEL.FCOS.USE_SCALE = True
    # Activation of the box output (side distances in strides): "linear" (detectron2's
    # FCOS; distances may turn negative, i.e. inverted boxes) or "relu" (FCOS with
    # normalised targets: never inverted).
    cfg.MODEL.FCOS.BOX_ACTIVATION = "linear"
    # Auxiliary branch on the box tower: "centerness" (FCOS, ATSS) or "iou" (predicted
    # IoU of the box with its GT: PAA, LADA Eq. 9, CIoU-ATSS).
    cfg.MODEL.FCOS.AUX_BRANCH = "centerness"
    cfg.MODEL.FCOS.FOCAL_LOSS_ALPHA = 0.25
    cfg.MODEL.FCOS.FOCAL_LOSS_GAMMA = 2.0
    # Classification loss, with any matcher: "focal" (one-hot targets), "qfl" (Quality
    # Focal Loss of GFL) or "vfl" (Varifocal Loss of VarifocalNet). QFL and VFL use soft
    # targets: a positive's MatchResult.cls_target_quality, or, when its matcher gives
    # none, the detached IoU of its predicted box with its GT (CIoU-ATSS Tables I-II).
    cfg.MODEL.FCOS.CLS_LOSS = "focal"
    # QFL's beta (GFL: 2; no alpha).
    cfg.MODEL.FCOS.QFL_BETA = 2.0
    # VFL's alpha and gamma on negatives (VarifocalNet: 0.75, 2).
    cfg.MODEL.FCOS.VFL_ALPHA = 0.75
    cfg.MODEL.FCOS.VFL_GAMMA = 2.0
    cfg.MODEL.FCOS.CLS_LOSS_WEIGHT = 1.0
    cfg.MODEL.FCOS.BOX_LOSS_WEIGHT = 1.0
    cfg.MODEL.FCOS.AUX_LOSS_WEIGHT = 1.0
    # "none": GIoU loss summed over positives / normaliser (detectron2 FCOS).
    # "aux_target": each positive's GIoU loss weighted by its auxiliary target and
    # normalised by the sum of those targets over all workers (ATSS, PAA).
    cfg.MODEL.FCOS.BOX_LOSS_WEIGHTING = "none"
    # Loss normaliser. "ema": moving average of the local positive count (detectron2
    # FCOS), stored in a buffer so it survives --resume. "num_pos": positives averaged
    # over all workers, at least 1 (ATSS, PAA, LADA, DW).
    cfg.MODEL.FCOS.NORMALIZER = "ema"
    cfg.MODEL.FCOS.NORMALIZER_EMA_INIT = 300.0
    cfg.MODEL.FCOS.NORMALIZER_EMA_MOMENTUM = 0.9
    # Inference, as detectron2's FCOS; detections per image: TEST.DETECTIONS_PER_IMAGE.
    cfg.MODEL.FCOS.SCORE_THRESH_TEST = 0.2
    cfg.MODEL.FCOS.TOPK_CANDIDATES_TEST = 1000
    cfg.MODEL.FCOS.NMS_THRESH_TEST = 0.6


def _add_matcher_config(cfg: CN) -> None:
    cfg.MODEL.MATCHER = CN()
    # Registered name of the label-assignment method (lada.matchers.MATCHER_REGISTRY).
    cfg.MODEL.MATCHER.NAME = "fcos"

    # detectron2's FCOS: a point is a candidate when its Chebyshev distance to the GT
    # centre is below CENTER_SAMPLING_RADIUS strides.
    cfg.MODEL.MATCHER.FCOS = CN()
    cfg.MODEL.MATCHER.FCOS.CENTER_SAMPLING_RADIUS = 1.5

    # ATSS (Zhang et al., CVPR 2020): TOPK closest points per level; anchor box of a
    # point = square of side ANCHOR_SCALE * stride.
    cfg.MODEL.MATCHER.ATSS = CN()
    cfg.MODEL.MATCHER.ATSS.TOPK = 9
    cfg.MODEL.MATCHER.ATSS.ANCHOR_SCALE = 8.0

    # Dynamic CIoU-ATSS (Zhang et al., "Dynamic Label Assignment for Object Detection by
    # Combining Predicted and Anchor IoUs"): ATSS candidates (TOPK per level, anchor box
    # ANCHOR_SCALE * stride) scored by the combined IoU
    # ANCHOR_WEIGHT * anchor-box IoU + PRED_WEIGHT * IoU of the detached predicted box.
    cfg.MODEL.MATCHER.CIOU_ATSS = CN()
    cfg.MODEL.MATCHER.CIOU_ATSS.TOPK = 9
    cfg.MODEL.MATCHER.CIOU_ATSS.ANCHOR_SCALE = 8.0
    # Weights of the two IoUs (paper: 1 and 1; Table III: 0.5, 1.5).
    cfg.MODEL.MATCHER.CIOU_ATSS.ANCHOR_WEIGHT = 1.0
    cfg.MODEL.MATCHER.CIOU_ATSS.PRED_WEIGHT = 1.0
    # Schedule multiplying each weight (Table III): "none", "d_up" (iteration / max_iter)
    # or "d_down" (1 - iteration / max_iter).
    cfg.MODEL.MATCHER.CIOU_ATSS.ANCHOR_WEIGHT_SCHEDULE = "none"
    cfg.MODEL.MATCHER.CIOU_ATSS.PRED_WEIGHT_SCHEDULE = "none"
    # Threshold per GT over its candidates: "sum_std" (authors' code: sum of the two
    # weighted means + sum of the two weighted unbiased stds) or "combined_std" (mean +
    # std of the combined score).
    cfg.MODEL.MATCHER.CIOU_ATSS.THRESHOLD = "sum_std"

    # PAA (Kim & Lee, ECCV 2020): preliminary match at anchor IoU >= PRELIM_IOU_THRESH,
    # TOPK lowest-loss candidates per level, two-component GMM (EM: GMM_MAX_ITER, GMM_TOL).
    cfg.MODEL.MATCHER.PAA = CN()
    cfg.MODEL.MATCHER.PAA.TOPK = 9
    cfg.MODEL.MATCHER.PAA.PRELIM_IOU_THRESH = 0.1
    cfg.MODEL.MATCHER.PAA.ANCHOR_SCALE = 8.0
    cfg.MODEL.MATCHER.PAA.GMM_MAX_ITER = 100
    cfg.MODEL.MATCHER.PAA.GMM_TOL = 1e-3

    # LADA (Han et al., Sensors 2023), Algorithm 1; each switch reproduces an ablation.
    cfg.MODEL.MATCHER.LADA = CN()
    # Centre prior of C1: "epcp" (Eq. 1-2), "cp" (square, Table 1 without EPCP) or
    # "none" (inside the GT only, Table 6); radius r in strides.
    cfg.MODEL.MATCHER.LADA.CENTER_PRIOR = "epcp"
    cfg.MODEL.MATCHER.LADA.CENTER_RADIUS = 2.5
    # Anchor score: "cla" (Eq. 3-7), "la" (no deviation loss, Tables 1/6/8) or "iou"
    # (anchor IoU, Table 6); regression term "giou" or "iou" (Table 7).
    cfg.MODEL.MATCHER.LADA.SCORE = "cla"
    cfg.MODEL.MATCHER.LADA.REG_LOSS = "giou"
    cfg.MODEL.MATCHER.LADA.LAMBDA_REG = 1.5
    cfg.MODEL.MATCHER.LADA.LAMBDA_DEV = 1.0
    # Division: "dlt" (section 3.3), "fixed" (FIXED_NUM_POS lowest, Table 8), "gmm"
    # (PAA's, Table 8) or "mean_std" (ATSS statistics on the score, Table 6's IoU row).
    cfg.MODEL.MATCHER.LADA.DIVISION = "dlt"
    cfg.MODEL.MATCHER.LADA.TOPK = 9
    # m of DLT: C3 = the TOPM lowest-CLA candidates (Table 9: 18, 20, 22).
    cfg.MODEL.MATCHER.LADA.TOPM = 20
    cfg.MODEL.MATCHER.LADA.FIXED_NUM_POS = 10
    cfg.MODEL.MATCHER.LADA.PRELIM_IOU_THRESH = 0.1
    cfg.MODEL.MATCHER.LADA.ANCHOR_SCALE = 8.0


def _add_data_config(cfg: CN) -> None:
    # COCO-format datasets to register before training, each [name, json, image_root];
    # relative paths are taken from the working directory. Same as
    # `train_net.py --dataset NAME JSON IMAGE_ROOT`.
    cfg.DATASETS.REGISTER_COCO = []
