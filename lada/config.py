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
    _add_checkpoint_config(cfg)
    _add_solver_config(cfg)
    _add_test_config(cfg)
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
    # MMMC's receptive-field adaptor: the RFA_POSITION-th conv (0-based) of both towers
    # becomes a deformable conv with offsets from a zero-initialised conv (Table 3).
    cfg.MODEL.FCOS.RFA = False
    cfg.MODEL.FCOS.RFA_POSITION = 0
    # Auxiliary branch on the box tower: "centerness" (FCOS, ATSS), "iou" (predicted
    # IoU of the box with its GT: PAA, LADA Eq. 9, CIoU-ATSS) or "giou" (max(GIoU, 0) of
    # the box with its GT: MMMC section 4.1).
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
    # What SCORE_THRESH_TEST is compared with: "combined" = sqrt(sigmoid(cls) *
    # sigmoid(aux)) (detectron2's FCOS) or "cls" = the class probability, before the
    # product with the auxiliary score (the official ATSS and PAA code, LADA 4.2.2).
    cfg.MODEL.FCOS.SCORE_THRESH_ON = "combined"
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
    # Shape of that centre region: "square" (detectron2's FCOS) or "epcp" (the rectangle
    # of the same area with the GT's aspect ratio: LADA Table 5, section 4.3.2 (4)).
    cfg.MODEL.MATCHER.FCOS.CENTER_PRIOR = "square"

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
    # Keep only matched points strictly inside their GT as candidates: the LADA paper's
    # rule for every method compared on its point detector (section 4.2.1). False is the
    # official anchor-based PAA, whose positives may lie outside their GT box.
    cfg.MODEL.MATCHER.PAA.INSIDE_GT = True
    cfg.MODEL.MATCHER.PAA.GMM_MAX_ITER = 100
    cfg.MODEL.MATCHER.PAA.GMM_TOL = 1e-3

    # MMMC's aligned points sampler (Hao et al., section 3.2): per level the TOPK
    # lowest-loss points inside the GT; the NUM_LEVELS levels of lowest mean loss
    # (SCALE_CRITERION "comb" = cls + reg, "cls" or "reg": Table 1); positives from a GMM
    # (GMM_MAX_ITER, GMM_TOL) on S = sqrt(S_f * S_m). SCALE / SPATIAL switch each
    # procedure off (Table 6), falling back to FCOS's size ranges / centre sampling
    # (radius CENTER_SAMPLING_RADIUS strides).
    cfg.MODEL.MATCHER.APS = CN()
    cfg.MODEL.MATCHER.APS.TOPK = 9
    cfg.MODEL.MATCHER.APS.NUM_LEVELS = 2
    cfg.MODEL.MATCHER.APS.SCALE_CRITERION = "comb"
    cfg.MODEL.MATCHER.APS.SCALE = True
    cfg.MODEL.MATCHER.APS.SPATIAL = True
    cfg.MODEL.MATCHER.APS.CENTER_SAMPLING_RADIUS = 1.5
    cfg.MODEL.MATCHER.APS.GMM_MAX_ITER = 100
    cfg.MODEL.MATCHER.APS.GMM_TOL = 1e-3

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
    # Checks of every box of a dataset the run uses, once, when it is loaded (README, "Data
    # checks and failure behaviour"). Per kind of bad box: "error" stops with a message
    # naming the dataset, the annotation ids and image files; "drop_with_warning" drops
    # those annotations and logs their count and the first few.
    cfg.DATASETS.BAD_BOX_POLICY = CN()
    # NaN or infinite coordinate (detectron2 would drop NaN boxes, clip infinite ones).
    cfg.DATASETS.BAD_BOX_POLICY.NON_FINITE = "error"
    # Negative width or height (detectron2's transforms would reflect it into a valid box).
    cfg.DATASETS.BAD_BOX_POLICY.NEGATIVE_SIZE = "error"
    # Zero width or height.
    cfg.DATASETS.BAD_BOX_POLICY.ZERO_SIZE = "drop_with_warning"
    # No overlap with its image (width, height of the json's image entry).
    cfg.DATASETS.BAD_BOX_POLICY.OUT_OF_IMAGE = "drop_with_warning"
    # A training dataset in which no image keeps an annotation (after the box checks) is
    # refused, since it would train the background class only; True allows it (warning).
    cfg.DATASETS.ALLOW_UNANNOTATED = False
    # An image file that cannot be read (missing, truncated, not an image) in training:
    # "error" stops naming the file and its dataset; "skip_with_warning" logs that and
    # trains on another image instead. Evaluation always stops (a skipped image would
    # corrupt the metrics).
    cfg.DATASETS.IMAGE_READ_POLICY = "error"


def _add_checkpoint_config(cfg: CN) -> None:
    # A ".pkl" MODEL.WEIGHTS is read by a restricted unpickler that accepts only numpy
    # arrays and plain types (all that detectron2's and Detectron's model-zoo files hold).
    # True reads it with plain pickle, which runs any code the file contains: only for
    # files from a source you trust.
    cfg.MODEL.WEIGHTS_TRUST_PICKLE = False


def _add_solver_config(cfg: CN) -> None:
    # Autocast dtype of SOLVER.AMP.ENABLED (detectron2's key): "float16" (CUDA only:
    # detectron2's AMPTrainer, with gradient scaling), "bfloat16" (CPU, or a CUDA device
    # that supports it: lada's AutocastTrainer, no scaling needed) or "auto" = float16
    # on CUDA and bfloat16 on the CPU. Matching and losses always run in float32.
    cfg.SOLVER.AMP.PRECISION = "auto"


def _add_test_config(cfg: CN) -> None:
    # Slender-object AP (LADA Table 4, by aspect ratio instead of hand-picked classes):
    # edges of the bands of GT aspect ratio (long side / short side) in which the COCO
    # box-AP table is computed beside the usual one, COCO's way (GT boxes of other bands
    # ignored, not deleted). [3.0]: bands [1, 3) and [3, inf); [] turns it off.
    cfg.TEST.ASPECT_RATIO_EDGES = [3.0]
