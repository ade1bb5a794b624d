"""SimOTA on the FCOS R-50 detector with YOLOX's losses
(configs/COCO-Detection/simota_R_50_FPN_1x.yaml): the release rule; objectness at every
point (initial probability 0.01), class BCE on the positives against one-hot x IoU, IoU
loss 1 - IoU^2 x5, positives as normaliser; side distances from half a stride; the 1x
schedule of the common model; test score sigmoid(cls) * sigmoid(objectness) at 0.01,
NMS 0.65."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.simota import SimOTAMatcher

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(SimOTAMatcher)(center_radius=2.5, topk_iou=10, iou_weight=3.0)
model.loss.update(aux_branch="objectness", cls_loss="bce_iou", box_loss="iou_squared",
                  box_weight=5.0, normalizer="num_pos")
model.head.update(box_bias_init=0.5, aux_prior_prob=0.01)
model.test_score = "product"
model.test_score_thresh = 0.01
model.test_nms_thresh = 0.65
train.output_dir = "output/coco/simota_R_50_FPN_1x"
