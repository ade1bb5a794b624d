"""configs/quick/aps.yaml: MMMC (APS matcher, RFA head, GIoU quality branch) on the quick
CPU model."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.aps import APSMatcher

from .common.quick import dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(APSMatcher)(topk=9, num_levels=2, scale_criterion="comb")
model.head.update(rfa=True, rfa_position=0)
model.loss.update(aux_branch="giou", normalizer="num_pos")
model.test_score_thresh_on = "cls"
train.output_dir = "output/quick/aps"
