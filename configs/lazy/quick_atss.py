"""configs/quick/atss.yaml: the ATSS matcher, centerness branch and GIoU x2 weighted by
its target on the quick CPU model (the quick schedule)."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.atss import ATSSMatcher

from .common.quick import ANCHOR_SCALE, dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(ATSSMatcher)(topk=9, anchor_scale=ANCHOR_SCALE)
model.loss.update(aux_branch="centerness", normalizer="num_pos", box_weight=2.0,
                  box_weighting="aux_target")
model.test_score_thresh_on = "cls"
train.output_dir = "output/quick/atss"
