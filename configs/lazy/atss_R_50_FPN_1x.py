"""ATSS as its official code (configs/COCO-Detection/atss_R_50_FPN_1x.yaml): top-9 per
level, mean + std IoU threshold; centerness branch; GIoU x2 weighted by the centerness
target; losses normalised by the positives; constant warm-up at 1/3 over 500
iterations, bias lr x2 without weight decay; test threshold on the class probability."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.atss import ATSSMatcher

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(ATSSMatcher)(topk=9, anchor_scale=8.0)
model.loss.update(aux_branch="centerness", normalizer="num_pos", box_weight=2.0,
                  box_weighting="aux_target")
model.test_score_thresh_on = "cls"
optimizer.params.update(bias_lr_factor=2.0, weight_decay_bias=0.0)
lr_multiplier.update(warmup_method="constant", warmup_factor=1.0 / 3, warmup_iters=500)
train.output_dir = "output/coco/atss_R_50_FPN_1x"
