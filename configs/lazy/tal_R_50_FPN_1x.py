"""TOOD's task-aligned assignment with TOOD's losses on the FCOS head
(configs/COCO-Detection/tal_R_50_FPN_1x.yaml): no auxiliary branch, QFL on the
normalised alignment metric, GIoU x2 weighted by it and normalised by its sum, the ATSS
warm-up of the first 4 of 12 epochs with TOOD's initial losses; test score sigmoid(cls),
threshold 0.05, NMS 0.6; linear warm-up over 500 iterations."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.tal import TALMatcher

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(TALMatcher)(topk=13, alpha=1.0, beta=6.0, initial_epochs=4, schedule_epochs=12)
model.head.update(with_aux=False, box_activation="relu", box_bias_init=1.0)
model.loss.update(aux_branch="none", cls_loss="qfl", normalizer="quality_sum", box_weight=2.0,
                  box_weighting="quality", without_quality="focal_centerness")
model.test_nms_thresh = 0.6
lr_multiplier.warmup_iters = 500
train.output_dir = "output/coco/tal_R_50_FPN_1x"
