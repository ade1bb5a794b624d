"""MMMC (configs/COCO-Detection/aps_R_50_FPN_1x.yaml): the APS matcher, the RFA head
(deformable first conv of each tower) and the GIoU quality branch; losses normalised by
the positives, test threshold on the class probability."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.aps import APSMatcher

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(APSMatcher)(topk=9, num_levels=2, scale_criterion="comb")
model.head.update(rfa=True, rfa_position=0)
model.loss.update(aux_branch="giou", normalizer="num_pos")
model.test_score_thresh_on = "cls"
train.output_dir = "output/coco/aps_R_50_FPN_1x"
