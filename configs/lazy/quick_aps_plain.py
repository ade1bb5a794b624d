"""configs/quick/aps_plain.yaml: the APS matcher on the plain head of the other quick
configs (no RFA), the like-with-like row of the comparison study."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.aps import APSMatcher

from .common.quick import dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(APSMatcher)(topk=9, num_levels=2, scale_criterion="comb")
model.loss.update(aux_branch="giou", normalizer="num_pos")
model.test_score_thresh_on = "cls"
train.output_dir = "output/quick/aps_plain"
