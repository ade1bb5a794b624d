#!/usr/bin/env python
r"""Train or evaluate a LazyConfig (``.py``) config of ``configs/lazy``, detectron2's
convention for its newer projects; ``train_net.py`` is the same for the yaml configs.

    python tools/lazyconfig_train_net.py --config-file configs/lazy/quick_lada.py
    python tools/lazyconfig_train_net.py --config-file CONFIG --eval-only \
        train.init_checkpoint=model_final.pth
    python tools/lazyconfig_train_net.py --config-file CONFIG --num-gpus 8 train.device=cuda

Overrides are ``key=value`` (``train.max_iter=100``, which moves the schedule's steps and
warm-up with it; ``dataloader.train.total_batch_size=8``); ``--dataset NAME JSON
IMAGE_ROOT`` registers a COCO-format dataset, as for train_net.py. The run ends with the
same summary as train_net.py's.
"""
import lada  # noqa: F401  (prepares detectron2, registers the model and matchers)
from lada.engine import build_argument_parser, launch
from lada.engine.lazy import check_before_launch, do_eval_only, do_train, setup, summarize_run
from lada.engine.summary import WarningCollector


def main(args):
    with WarningCollector() as warned:  # the warnings of lada's loggers, for the summary
        cfg = setup(args)
        if args.eval_only:
            results = do_eval_only(cfg, resume=args.resume)
        else:
            results = do_train(cfg, resume=args.resume)
        summarize_run(cfg, args, warned.messages, results)
        return results


if __name__ == "__main__":
    args = build_argument_parser().parse_args()
    print("Command Line Args:", args)
    check_before_launch(args)  # refused settings stop here, in one line, before any process
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
