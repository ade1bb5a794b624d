#!/usr/bin/env python
"""Train or evaluate an FCOS-family detector with a pluggable label assignment.

    python train_net.py --config-file configs/quick/atss.yaml
    python train_net.py --config-file CONFIG --eval-only MODEL.WEIGHTS model_final.pth
    python train_net.py --config-file CONFIG --num-gpus 8

Either way the run ends with a short summary: its warnings repeated, where the model,
metrics, evaluation results and TensorBoard files are, and, for a shipped quick config,
the README's figure for it (lada/engine/summary.py).
"""
import os

import lada  # noqa: F401  (prepares detectron2, registers the model and matchers)
from lada.engine import (
    CheckpointError, LadaCheckpointer, Trainer, build_argument_parser, check_before_launch,
    command_line_cfg, launch, output_dir_lock, register_datasets, setup_cfg, summarize_run,
    write_eval_results,
)
from lada.engine.run_folder import warn_earlier_run
from lada.engine.summary import WarningCollector


def main(args):
    # one run per folder; the warnings of lada's loggers kept for the summary
    with output_dir_lock(command_line_cfg(args).OUTPUT_DIR), WarningCollector() as warned:
        cfg = setup_cfg(args)
        register_datasets(cfg, args)
        if args.eval_only:
            model = Trainer.build_model(cfg)
            try:  # every weight of the model from the checkpoint, or one line saying why not
                LadaCheckpointer(
                    model, save_dir=cfg.OUTPUT_DIR, trust_pickle=cfg.MODEL.WEIGHTS_TRUST_PICKLE,
                    for_inference=True,
                ).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
            except CheckpointError as error:
                raise SystemExit(f"--eval-only: {error}") from None
            results = Trainer.test(cfg, model)
            write_eval_results(cfg, results)  # OUTPUT_DIR/eval_results.json
        else:
            warn_earlier_run(cfg.OUTPUT_DIR, args.resume)
            trainer = Trainer(cfg)
            trainer.resume_or_load(resume=args.resume)
            results = trainer.train()
            if results:  # the final evaluation, of the final model
                write_eval_results(cfg, results, os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
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
