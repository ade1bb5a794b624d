"""detectron2's FCOS (configs/COCO-Detection/fcos_R_50_FPN_1x.yaml): centre-sampling
assignment, centerness branch, loss normalised by the moving average of the positives."""
from .common.data import dataloader
from .common.model import model
from .common.optim import optimizer
from .common.schedule import lr_multiplier, train

train.output_dir = "output/coco/fcos_R_50_FPN_1x"
