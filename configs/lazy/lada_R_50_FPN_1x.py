"""LADA (EPCP + CLA + DLT) with the IoU branch (configs/COCO-Detection/lada_R_50_FPN_1x.yaml):
focal + GIoU x2 + IoU BCE x1 normalised by the positives, test threshold on the class
probability; the LADA paper's schedule (12 epochs at batch 8: lr 0.005, 180k iterations,
steps 120k / 160k)."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.lada import LADAMatcher

from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

model.matcher = L(LADAMatcher)(center_prior="epcp", score="cla", division="dlt")
model.loss.update(aux_branch="iou", normalizer="num_pos", box_weight=2.0, aux_weight=1.0)
model.test_score_thresh_on = "cls"
dataloader.train.total_batch_size = 8
optimizer.lr = 0.005
lr_multiplier.steps = [120000, 160000]
train.max_iter = 180000
train.checkpointer.period = 20000
train.output_dir = "output/coco/lada_R_50_FPN_1x"
