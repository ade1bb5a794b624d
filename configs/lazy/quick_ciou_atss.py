"""configs/quick/ciou_atss.yaml: dynamic CIoU-ATSS with QFL and the IoU branch on the
quick CPU model."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.ciou_atss import CIoUATSSMatcher

from .common.quick import ANCHOR_SCALE, dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(CIoUATSSMatcher)(
    anchor_weight=1.0, pred_weight=1.0, threshold="sum_std", anchor_scale=ANCHOR_SCALE)
model.head.box_bias_init = 4.0
model.loss.update(cls_loss="qfl", aux_branch="iou", normalizer="num_pos", box_weight=2.0,
                  box_weighting="aux_target")
model.test_score_thresh_on = "cls"
train.output_dir = "output/quick/ciou_atss"
