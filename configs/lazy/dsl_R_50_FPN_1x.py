"""RTMDet's dynamic soft-label assignment with RTMDet's losses on the FCOS head
(configs/COCO-Detection/dsl_R_50_FPN_1x.yaml): no auxiliary branch, QFL on the IoU, GIoU
x2 weighted by it and normalised by its sum (at least 1); RTMDet's test settings (score
threshold 0.001, NMS 0.65, 300 detections per image)."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.dsl import DSLMatcher

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(DSLMatcher)(soft_center_radius=3.0, topk=13, iou_weight=3.0)
model.head.update(with_aux=False, box_activation="relu", box_bias_init=1.0)
model.loss.update(aux_branch="none", cls_loss="qfl", normalizer="quality_sum_min1",
                  box_weight=2.0, box_weighting="quality")
model.test_score_thresh = 0.001
model.test_nms_thresh = 0.65
model.max_detections_per_image = 300
train.output_dir = "output/coco/dsl_R_50_FPN_1x"
