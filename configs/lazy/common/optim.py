"""SGD of the yaml configs (detectron2's ``build_optimizer``): momentum 0.9, weight decay
1e-4 except on norm layers; ``params.bias_lr_factor`` / ``weight_decay_bias`` are the
yaml's ``SOLVER.BIAS_LR_FACTOR`` / ``WEIGHT_DECAY_BIAS``. ``params.model`` is set to the
model by the training tool."""
import torch
from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

optimizer = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(
        base_lr="${..lr}",
        weight_decay_norm=0.0,
        bias_lr_factor=1.0,
        weight_decay_bias=None,  # None: the weight decay of the weights
    ),
    lr=0.01,
    momentum=0.9,
    nesterov=False,
    weight_decay=1e-4,
)
