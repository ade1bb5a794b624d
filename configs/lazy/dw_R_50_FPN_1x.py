"""DW with box refinement (configs/COCO-Detection/dw_R_50_FPN_1x.yaml, official
variant): soft pairwise weights and their loss; the authors' head initialisation
(classification prior 0.02, box bias 4 strides), ReLU side distances; test score
sigmoid(cls) * sigmoid(centerness) without square root, thresholded at 0.05."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.dw import DWMatcher
from lada.modeling.losses import PairwiseWeightedLoss

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(DWMatcher)(variant="official", focal_alpha=0.25)
model.loss = L(PairwiseWeightedLoss)(pos_cls_weight=0.25, box_weight=1.25, neg_weight=1.0)
model.head.update(prior_prob=0.02, box_bias_init=4.0, box_activation="relu", box_refine=True)
model.test_score = "product"
train.output_dir = "output/coco/dw_R_50_FPN_1x"
