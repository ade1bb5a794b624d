"""configs/quick/dsl.yaml: RTMDet's dynamic soft-label assignment with RTMDet's losses
(no auxiliary branch, QFL on the IoU, GIoU x2 weighted by it, normalised by its sum, at
least 1) on the quick CPU model."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.dsl import DSLMatcher

from .common.quick import dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(DSLMatcher)(soft_center_radius=3.0, topk=13, iou_weight=3.0)
model.head.update(with_aux=False, box_activation="relu", box_bias_init=1.0)
model.loss.update(aux_branch="none", cls_loss="qfl", normalizer="quality_sum_min1",
                  box_weight=2.0, box_weighting="quality")
train.output_dir = "output/quick/dsl"
