"""The 1x schedule of configs/Base-LADA-FCOS.yaml (90k iterations at batch 16, x0.1 at
60k and 80k, linear warm-up over 1k iterations from 0.001) and the ``train`` dict of
``tools/lazyconfig_train_net.py``."""
from detectron2.config import LazyCall as L

from lada.engine.lazy_config import warmup_multistep

lr_multiplier = L(warmup_multistep)(
    max_iter="${train.max_iter}",
    steps=[60000, 80000],
    warmup_iters=1000,
    warmup_factor=0.001,
    warmup_method="linear",
)

train = dict(
    output_dir="./output",
    # detectron2's ImageNet-pretrained R-50 (the yaml key MODEL.WEIGHTS)
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    weights_trust_pickle=False,  # read .pkl weights with plain pickle (MODEL.WEIGHTS_TRUST_PICKLE)
    max_iter=90000,
    # mixed precision: precision "auto" is float16 on CUDA (detectron2's AMPTrainer) and
    # bfloat16 on the CPU (lada.engine.AutocastTrainer); see SOLVER.AMP in the README
    amp=dict(enabled=False, precision="auto"),
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=10000, max_to_keep=100),
    eval_period=0,  # 0: evaluate once, after the last iteration
    log_period=20,
    device="cuda",
    seed=-1,  # -1: a random seed, logged
)
