"""Config keys of lada, added to a detectron2 config by :func:`add_lada_config`.

Defaults are the papers' hyperparameters (docs/methods/, one page per matcher) and, for the
meta-architecture, detectron2's FCOS. Keys of the meta-architecture live under
``MODEL.FCOS``; keys of a matcher under ``MODEL.MATCHER.<NAME>``, read from the
registered classes (``lada/matchers/declaration.py``), so that a method of your own,
imported before the config is built (``CUSTOM_IMPORTS``), has its keys too.
"""
from __future__ import annotations

from detectron2.config import CfgNode as CN

from .matchers import MATCHER_REGISTRY
from .matchers.declaration import config_node

__all__ = ["add_lada_config"]


def add_lada_config(cfg: CN) -> CN:
    """Adds every lada key, with its default, to ``cfg`` in place and returns it."""
    # Your own modules (a file ending in .py, relative to the working directory, or a
    # module name), imported before the config is built so that what they register (a
    # matcher and its MODEL.MATCHER.<NODE> keys) exists: lada/custom_imports.py,
    # docs/methods/adding-a-method.md. A saved run config records files as absolute paths.
    cfg.CUSTOM_IMPORTS = []
    _add_fcos_config(cfg)
    _add_matcher_config(cfg)
    _add_data_config(cfg)
    _add_checkpoint_config(cfg)
    _add_solver_config(cfg)
    _add_input_config(cfg)
    _add_recipe_config(cfg)
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
    # Initial bias of the box output, i.e. every side distance in strides at the start:
    # 0.0 (detectron2's FCOS: predicted boxes start as points) or 4.0 (they start as the
    # 8-stride square anchor box an anchor-based ATSS detector starts from; the authors'
    # DW code uses 4.0). Matchers that read predicted-box IoUs from the first step
    # (ciou_atss) need boxes that overlap their GT at initialisation.
    cfg.MODEL.FCOS.BOX_BIAS_INIT = 0.0
    # MMMC's receptive-field adaptor: the RFA_POSITION-th conv (0-based) of both towers
    # becomes a deformable conv with offsets from a zero-initialised conv (Table 3).
    cfg.MODEL.FCOS.RFA = False
    cfg.MODEL.FCOS.RFA_POSITION = 0
    # DW's box refinement (section 3.4, as the authors' code): an 8-channel conv on the box
    # tower offsets one sampling point near each side of the coarse box; each side is
    # re-read there from the coarse box map by bilinear sampling (zeros outside the map).
    # Used in training and inference.
    cfg.MODEL.FCOS.BOX_REFINE = False
    # Auxiliary branch on the box tower, trained with BCE: "centerness" (FCOS, ATSS),
    # "iou" (predicted IoU of the box with its GT: PAA, LADA Eq. 9, CIoU-ATSS, OTA) or
    # "giou" (max(GIoU, 0) of the box with its GT: MMMC section 4.1), each at the
    # positives; "objectness" (YOLOX, simota) at every point, target 1 at the positives
    # and 0 elsewhere (the branch that suppresses the background); "none" (TOOD's and
    # RTMDet's losses: tal, dsl): the head has no aux conv, the loss no auxiliary term,
    # the test score is sigmoid(cls) (TEST_SCORE and SCORE_THRESH_ON then have no effect).
    cfg.MODEL.FCOS.AUX_BRANCH = "centerness"
    # Initial probability of the auxiliary branch, as PRIOR_PROB of the classification:
    # 0.5 (bias 0, detectron2's FCOS) or 0.01 (YOLOX's objectness, trained at every point).
    cfg.MODEL.FCOS.AUX_PRIOR_PROB = 0.5
    # Loss module: "dense" (per-point targets from MatchResult.gt_index: classification,
    # box and auxiliary-branch losses below; every hard matcher), "weighted_pairs" (the
    # soft fields of MatchResult, DW: per (point, GT) pair a positive classification and
    # a GIoU term, per (point, class) a negative term, on the joint score
    # sigmoid(cls) * sigmoid(aux); the auxiliary branch has no loss of its own) or
    # "auto": the one that consumes the kind of result the matcher's class declares
    # (weighted_pairs for dw, dense for the others), so that changing MODEL.MATCHER.NAME
    # alone switches the method. A loss that cannot consume it is refused at build time.
    cfg.MODEL.FCOS.LOSS = "auto"
    # Factors of the "weighted_pairs" loss (defaults: the authors' DW code). Positive
    # classification POS_CLS_WEIGHT * w * -ln(s) and box BOX_WEIGHT * w * GIoU loss per
    # pair, both divided by the positive normaliser; negative NEG_WEIGHT * w_neg *
    # s^NEG_POWER * -ln(1 - s) per (point, class), divided by the negative normaliser.
    # The DW paper's text: 1.0, 5.0 (Eq. 11's beta), 1.0, NEG_POWER = gamma2 = 2.
    cfg.MODEL.FCOS.WEIGHTED_PAIRS = CN()
    cfg.MODEL.FCOS.WEIGHTED_PAIRS.POS_CLS_WEIGHT = 0.25
    cfg.MODEL.FCOS.WEIGHTED_PAIRS.BOX_WEIGHT = 1.25
    cfg.MODEL.FCOS.WEIGHTED_PAIRS.NEG_WEIGHT = 1.0
    cfg.MODEL.FCOS.WEIGHTED_PAIRS.NEG_POWER = 2.0
    cfg.MODEL.FCOS.FOCAL_LOSS_ALPHA = 0.25
    cfg.MODEL.FCOS.FOCAL_LOSS_GAMMA = 2.0
    # Classification loss, with any matcher: "focal" (one-hot targets), "qfl" (Quality
    # Focal Loss of GFL), "vfl" (Varifocal Loss of VarifocalNet) or "bce_iou" (YOLOX:
    # BCE with logits on the positives only, target one-hot x the quality target, no
    # class loss at negatives; with AUX_BRANCH objectness). QFL, VFL and bce_iou use soft
    # targets: a positive's target is the matcher's quality target when its result
    # carries one (MatchResult.quality: TOOD, RTMDet), else the detached IoU of its
    # predicted box with its GT (CIoU-ATSS's PIoU; CIoU-ATSS Tables I-II).
    cfg.MODEL.FCOS.CLS_LOSS = "focal"
    # QFL's beta (GFL: 2; no alpha).
    cfg.MODEL.FCOS.QFL_BETA = 2.0
    # VFL's alpha and gamma on negatives (VarifocalNet: 0.75, 2).
    cfg.MODEL.FCOS.VFL_ALPHA = 0.75
    cfg.MODEL.FCOS.VFL_GAMMA = 2.0
    # Box loss of each positive: "giou" (1 - GIoU; detectron2's FCOS and every method but
    # simota) or "iou_squared" (YOLOX's IOUloss, 1 - IoU^2).
    cfg.MODEL.FCOS.BOX_LOSS = "giou"
    cfg.MODEL.FCOS.CLS_LOSS_WEIGHT = 1.0
    cfg.MODEL.FCOS.BOX_LOSS_WEIGHT = 1.0
    cfg.MODEL.FCOS.AUX_LOSS_WEIGHT = 1.0
    # "none": box loss summed over positives / normaliser (detectron2 FCOS).
    # "aux_target": each positive's box loss weighted by its auxiliary target and
    # normalised by the sum of those targets over all workers (ATSS, PAA).
    # "quality": weighted by its quality target (the matcher's MatchResult.quality when
    # its result carries one, else the IoU of its predicted box), normalised the same
    # way (TOOD, RTMDet).
    cfg.MODEL.FCOS.BOX_LOSS_WEIGHTING = "none"
    # Loss normaliser. "ema": moving average of the local positive count (detectron2
    # FCOS), stored in a buffer so it survives --resume. "num_pos": positives averaged
    # over all workers, at least 1 (ATSS, PAA, LADA, DW, OTA, YOLOX).
    # "quality_sum": the sum of the positives' quality targets (the matcher's
    # MatchResult.quality, else the IoU) averaged over all workers, replaced by 1 only
    # below 1e-12 (TOOD); "quality_sum_min1": the same, at least 1 (RTMDet). With either,
    # BOX_LOSS_WEIGHTING's sum of weights gets the same floor.
    cfg.MODEL.FCOS.NORMALIZER = "ema"
    # What a training step whose MatchResult carries no quality target trains (tal's ATSS
    # warm-up): "iou" (the IoU of the predicted box stands in for it) or
    # "focal_centerness" (TOOD's initial losses: focal loss with one-hot targets, each
    # positive's box loss weighted by its FCOS centerness target and divided by their
    # sum, a quality_sum normaliser replaced by the positive count).
    cfg.MODEL.FCOS.LOSS_WITHOUT_QUALITY = "iou"
    cfg.MODEL.FCOS.NORMALIZER_EMA_INIT = 300.0
    cfg.MODEL.FCOS.NORMALIZER_EMA_MOMENTUM = 0.9
    # Inference, as detectron2's FCOS; detections per image: TEST.DETECTIONS_PER_IMAGE.
    cfg.MODEL.FCOS.SCORE_THRESH_TEST = 0.2
    # What SCORE_THRESH_TEST is compared with: "combined" = the detection score of
    # TEST_SCORE (detectron2's FCOS) or "cls" = the class probability, before the
    # product with the auxiliary score (the official ATSS and PAA code, LADA 4.2.2).
    cfg.MODEL.FCOS.SCORE_THRESH_ON = "combined"
    # Detection score from the class and auxiliary probabilities: "geometric_mean" =
    # sqrt(sigmoid(cls) * sigmoid(aux)) (detectron2's FCOS, ATSS, PAA) or "product" =
    # sigmoid(cls) * sigmoid(aux) (the authors' DW code: the joint score it trains;
    # YOLOX's class probability times objectness, simota).
    cfg.MODEL.FCOS.TEST_SCORE = "geometric_mean"
    cfg.MODEL.FCOS.TOPK_CANDIDATES_TEST = 1000
    cfg.MODEL.FCOS.NMS_THRESH_TEST = 0.6


def _add_matcher_config(cfg: CN) -> None:
    cfg.MODEL.MATCHER = CN()
    # Registered name of the label-assignment method (lada.matchers.MATCHER_REGISTRY).
    cfg.MODEL.MATCHER.NAME = "fcos"
    # Each registered method's hyperparameters, MODEL.MATCHER.<NODE>.<ARGUMENT>, with the
    # defaults of its class's keyword arguments (the papers'), which its docstring
    # explains (lada/matchers/methods/<name>.py, docs/methods/<name>.md).
    for _, matcher in sorted(MATCHER_REGISTRY):
        cfg.MODEL.MATCHER[matcher.METHOD.config_node] = config_node(matcher)


def _add_data_config(cfg: CN) -> None:
    # COCO-format datasets to register before training, each [name, json, image_root];
    # relative paths are taken from the working directory. Same as
    # `train_net.py --dataset NAME JSON IMAGE_ROOT`.
    cfg.DATASETS.REGISTER_COCO = []
    # Checks of every box of a dataset the run uses, once, when it is loaded (docs/reliability.md,
    # "Data checks and failure behaviour"). Per kind of bad box: "error" stops with a message
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


def _add_input_config(cfg: CN) -> None:
    # Training augmentations added after detectron2's (ResizeShortestEdge over
    # INPUT.MIN_SIZE_TRAIN, then INPUT.RANDOM_FLIP), from detectron2.data.transforms:
    # "vertical_flip" (RandomFlip(vertical=True), p = 0.5) and "color_jitter"
    # (RandomBrightness, RandomContrast, RandomSaturation). Empty: detectron2's only.
    cfg.INPUT.EXTRA_AUGMENTATIONS = []
    # Strength x of "color_jitter": each factor is drawn uniformly from [1 - x, 1 + x].
    cfg.INPUT.COLOR_JITTER = 0.2


def _add_recipe_config(cfg: CN) -> None:
    # The own-data recipe (lada/data/recipe.py, README "Train on your own data"): at start-up
    # it reads the training datasets and sets the INPUT size and augmentation keys, the
    # SOLVER schedule and MODEL.FCOS.NUM_CLASSES from them, except the keys you set
    # yourself (on the command line or in a config file of your own); what it chose and
    # why is logged. configs/quick/own_data.yaml turns it on.
    cfg.RECIPE = CN()
    cfg.RECIPE.ENABLED = False
    # Set in a run's saved OUTPUT_DIR/config.yaml when the recipe chose its keys: that
    # config then holds the sizes and schedule the model was trained with, and reusing it
    # (--eval-only, tools/predict.py) keeps them instead of choosing again. Set it to
    # False to have the recipe choose again (e.g. fine-tuning on other data).
    cfg.RECIPE.APPLIED = False
    # Input size: the short side that keeps the median object (square root of its box
    # area) at OBJECT_SIZE px, never above MAX_SIZE (CPU speed), never below MIN_SIZE
    # (unless the images are smaller and UPSAMPLE is False). 32 px = 4 strides of P3, the
    # finest level. UPSAMPLE: small images whose objects need more pixels are enlarged (up
    # to MAX_SIZE), as the quick configs enlarge the embedded 128-px images: a box thinner
    # than the 8-px stride holds a P3 point only if it straddles one. False: never above
    # the training images' median short side.
    cfg.RECIPE.OBJECT_SIZE = 32
    cfg.RECIPE.MIN_SIZE = 128
    cfg.RECIPE.MAX_SIZE = 512
    cfg.RECIPE.UPSAMPLE = True
    # Augmentations to use, any of "horizontal_flip" (INPUT.RANDOM_FLIP horizontal),
    # "vertical_flip", "color_jitter" (INPUT.EXTRA_AUGMENTATIONS) and "multi_scale"
    # (INPUT.MIN_SIZE_TRAIN = the size times each of SCALES, one drawn per image).
    cfg.RECIPE.AUGMENTATIONS = ["horizontal_flip", "vertical_flip", "color_jitter", "multi_scale"]
    cfg.RECIPE.SCALES = (0.8, 0.9, 1.0, 1.1, 1.2)
    # Schedule: images per iteration (BASE_LR scaled linearly from the config's batch)
    # and the iterations for EPOCHS passes over the training images, at most what
    # BUDGET_MEGAPIXELS of training images (at the chosen sizes) allow. 184 megapixels is
    # what a quick config trains on (407 x 16 images of 168 x 168 px, as the former 700 x
    # 16 of 128 x 128); the training time grows in proportion. STEPS and WARMUP_ITERS keep
    # the config's fractions of MAX_ITER.
    cfg.RECIPE.IMS_PER_BATCH = 8
    cfg.RECIPE.EPOCHS = 100
    cfg.RECIPE.BUDGET_MEGAPIXELS = 184.0
    # Anchor boxes of the matchers that have them (MODEL.MATCHER.<NAME>.ANCHOR_SCALE of
    # atss, ciou_atss, paa, lada): the P3 anchor at ANCHOR_TO_OBJECT times the median
    # object at the chosen size; 0.9 is the ratio of the papers' 8-stride anchors (64 px)
    # to the median COCO object at 800 px (lada.data.recipe.COCO_ANCHOR_TO_OBJECT).
    cfg.RECIPE.ANCHOR_TO_OBJECT = 0.9


def _add_test_config(cfg: CN) -> None:
    # Slender-object AP (LADA Table 4, by aspect ratio instead of hand-picked classes):
    # edges of the bands of GT aspect ratio (long side / short side) in which the COCO
    # box-AP table is computed beside the usual one, COCO's way (GT boxes of other bands
    # ignored, not deleted). [3.0]: bands [1, 3) and [3, inf); [] turns it off.
    cfg.TEST.ASPECT_RATIO_EDGES = [3.0]
