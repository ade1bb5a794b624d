"""Training entry points: argument parsing, config setup, process launch, the trainer, its
mixed-precision step, its checkpointer, the run folder's config, the evaluation results
file and the end-of-run summary."""
from .amp import AutocastTrainer, amp_dtype
from .checkpoint import CheckpointError, LadaCheckpointer
from .launch import launch
from .output_lock import OutputDirInUseError, output_dir_lock
from .results import EVAL_RESULTS, write_eval_results
from .run_folder import RUN_CONFIG, save_run_config
from .setup import (
    build_argument_parser, build_cfg, check_before_launch, command_line_cfg, register_datasets,
    setup_cfg, summarize_run,
)
from .trainer import Trainer

__all__ = [
    "AutocastTrainer",
    "amp_dtype",
    "CheckpointError",
    "LadaCheckpointer",
    "Trainer",
    "EVAL_RESULTS",
    "write_eval_results",
    "RUN_CONFIG",
    "save_run_config",
    "launch",
    "OutputDirInUseError",
    "output_dir_lock",
    "check_before_launch",
    "command_line_cfg",
    "build_argument_parser",
    "build_cfg",
    "register_datasets",
    "setup_cfg",
    "summarize_run",
]
