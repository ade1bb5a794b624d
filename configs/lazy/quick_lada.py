"""configs/quick/lada.yaml: LADA (EPCP + CLA + DLT) with the IoU branch on the quick CPU
model."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.lada import LADAMatcher

from .common.quick import ANCHOR_SCALE, dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(LADAMatcher)(
    center_prior="epcp", score="cla", division="dlt", anchor_scale=ANCHOR_SCALE)
model.loss.update(aux_branch="iou", normalizer="num_pos", box_weight=2.0, aux_weight=1.0)
model.test_score_thresh_on = "cls"
train.output_dir = "output/quick/lada"
