#!/usr/bin/env python
r"""Train or evaluate a LazyConfig (``.py``) config of ``configs/lazy``, detectron2's
convention for its newer projects; ``train_net.py`` is the same for the yaml configs.

    python tools/lazyconfig_train_net.py --config-file configs/lazy/quick_lada.py
    python tools/lazyconfig_train_net.py --config-file CONFIG --eval-only \
        train.init_checkpoint=model_final.pth
    python tools/lazyconfig_train_net.py --config-file CONFIG --num-gpus 8 train.device=cuda

Overrides are ``key=value`` (``train.max_iter=100``, ``dataloader.train.total_batch_size=8``);
``--dataset NAME JSON IMAGE_ROOT`` registers a COCO-format dataset, as for train_net.py.
"""
import lada  # noqa: F401  (prepares detectron2, registers the model and matchers)
from lada.engine import build_argument_parser, launch
from lada.engine.lazy import do_eval_only, do_train, setup


def main(args):
    cfg = setup(args)
    if args.eval_only:
        return do_eval_only(cfg, resume=args.resume)
    return do_train(cfg, resume=args.resume)


if __name__ == "__main__":
    args = build_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
