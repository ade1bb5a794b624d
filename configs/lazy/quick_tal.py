"""configs/quick/tal.yaml: TOOD's task-aligned assignment with TOOD's losses (no
auxiliary branch, QFL on the normalised alignment metric, GIoU x2 weighted by it, the
ATSS warm-up with TOOD's initial losses) on the quick CPU model."""
from detectron2.config import LazyCall as L

from lada.matchers.methods.tal import TALMatcher

from .common.quick import ANCHOR_SCALE, dataloader, lr_multiplier, model, optimizer, train

model.matcher = L(TALMatcher)(topk=13, alpha=1.0, beta=6.0, initial_epochs=4, schedule_epochs=12,
                              anchor_scale=ANCHOR_SCALE)
model.head.update(with_aux=False, box_activation="relu", box_bias_init=1.0)
model.loss.update(aux_branch="none", cls_loss="qfl", normalizer="quality_sum", box_weight=2.0,
                  box_weighting="quality", without_quality="focal_centerness")
train.output_dir = "output/quick/tal"
