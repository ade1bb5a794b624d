"""configs/quick/simota.yaml: SimOTA with YOLOX's losses (objectness at every point, class
BCE on the positives against one-hot x IoU, IoU loss 1 - IoU^2 x5) on the quick CPU model;
side distances from half a stride; test score sigmoid(cls) * sigmoid(objectness)."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.simota import SimOTAMatcher

from .common.quick import dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(SimOTAMatcher)(center_radius=2.5, topk_iou=10, iou_weight=3.0)
model.loss.update(aux_branch="objectness", cls_loss="bce_iou", box_loss="iou_squared",
                  box_weight=5.0, normalizer="num_pos")
model.head.update(box_bias_init=0.5, aux_prior_prob=0.01)
model.test_score = "product"
model.test_score_thresh = 0.01
model.test_nms_thresh = 0.65
train.output_dir = "output/quick/simota"
