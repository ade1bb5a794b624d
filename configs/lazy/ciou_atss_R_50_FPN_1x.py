"""Dynamic CIoU-ATSS (configs/COCO-Detection/ciou_atss_R_50_FPN_1x.yaml): combined
IoUs (anchor + predicted, weights 1 and 1, sum-of-stds threshold), Quality Focal Loss
with the predicted IoU as soft target, IoU branch, GIoU x2 weighted by it, losses
normalised by the positives; boxes start as the 8-stride anchors."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.ciou_atss import CIoUATSSMatcher

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(CIoUATSSMatcher)(anchor_weight=1.0, pred_weight=1.0, threshold="sum_std")
model.head.box_bias_init = 4.0
model.loss.update(cls_loss="qfl", aux_branch="iou", normalizer="num_pos", box_weight=2.0,
                  box_weighting="aux_target")
model.test_score_thresh_on = "cls"
train.output_dir = "output/coco/ciou_atss_R_50_FPN_1x"
