"""configs/quick/paa.yaml: PAA (IoU branch, GIoU x1.3 weighted by the IoU target) on the
quick CPU model."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.paa import PAAMatcher

from .common.quick import ANCHOR_SCALE, dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(PAAMatcher)(topk=9, inside_gt=True, anchor_scale=ANCHOR_SCALE)
model.loss.update(aux_branch="iou", normalizer="num_pos", box_weight=1.3,
                  box_weighting="aux_target", aux_weight=0.5)
model.test_score_thresh_on = "cls"
train.output_dir = "output/quick/paa"
