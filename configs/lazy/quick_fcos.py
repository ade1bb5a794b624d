"""configs/quick/fcos.yaml: detectron2's FCOS matching on the quick CPU model."""
from .common.quick import dataloader, lr_multiplier, model, optimizer, train

train.output_dir = "output/quick/fcos"
