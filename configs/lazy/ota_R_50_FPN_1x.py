"""OTA as its official R-50 1x config (configs/COCO-Detection/ota_R_50_FPN_1x.yaml):
centre prior 2.5 strides, alpha 1.5, top-20 dynamic k, Sinkhorn epsilon 0.1 x 50; focal,
GIoU x2 unweighted, IoU branch x0.5, positives as normaliser; ReLU side distances; the
1x schedule of the common model; test score sqrt(sigmoid(cls) * sigmoid(iou)) at 0.05."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.ota import OTAMatcher

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(OTAMatcher)(reg_weight=1.5, center_radius=2.5, top_candidates=20,
                              sinkhorn_eps=0.1, sinkhorn_iter=50)
model.loss.update(aux_branch="iou", normalizer="num_pos", box_weight=2.0, aux_weight=0.5)
model.head.update(box_activation="relu")
train.output_dir = "output/coco/ota_R_50_FPN_1x"
