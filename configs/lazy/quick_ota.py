"""configs/quick/ota.yaml: OTA (focal, GIoU x2 unweighted, IoU branch x0.5, positives as
normaliser, ReLU side distances) on the quick CPU model."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.ota import OTAMatcher

from .common.quick import dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(OTAMatcher)(reg_weight=1.5, center_radius=2.5, top_candidates=20,
                              sinkhorn_eps=0.1, sinkhorn_iter=50)
model.loss.update(aux_branch="iou", normalizer="num_pos", box_weight=2.0, aux_weight=0.5)
model.head.update(box_activation="relu")
train.output_dir = "output/quick/ota"
