"""configs/quick/dw.yaml: DW (official variant) with box refinement, its pairwise loss,
head initialisation and test score on the quick CPU model."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.dw import DWMatcher
from lada.modeling.losses import PairwiseWeightedLoss

from .common.quick import dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(DWMatcher)(variant="official", focal_alpha=0.25)
model.loss = L(PairwiseWeightedLoss)(pos_cls_weight=0.25, box_weight=1.25, neg_weight=1.0)
model.head.update(prior_prob=0.02, box_bias_init=4.0, box_activation="relu", box_refine=True)
model.test_score = "product"
train.output_dir = "output/quick/dw"
