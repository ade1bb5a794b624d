"""PAA as its official R-50 1x config without score voting
(configs/COCO-Detection/paa_R_50_FPN_1x.yaml): IoU branch (BCE x0.5), GIoU x1.3 weighted
by the IoU target, losses normalised by the positives; constant warm-up at 1/3 over 500
iterations, bias lr x2 without weight decay; candidates inside their GT only."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.paa import PAAMatcher

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(PAAMatcher)(topk=9, inside_gt=True)
model.loss.update(aux_branch="iou", normalizer="num_pos", box_weight=1.3,
                  box_weighting="aux_target", aux_weight=0.5)
model.test_score_thresh_on = "cls"
optimizer.params.update(bias_lr_factor=2.0, weight_decay_bias=0.0)
lr_multiplier.update(warmup_method="constant", warmup_factor=1.0 / 3, warmup_iters=500)
train.output_dir = "output/coco/paa_R_50_FPN_1x"
