"""Training entry points: argument parsing, config setup, process launch, the trainer, its
mixed-precision step, its checkpointer (and resume), its stop on SIGINT/SIGTERM, the run
folder's config, the evaluation results file and the end-of-run summary."""
from .amp import AutocastTrainer, amp_dtype
from .checkpoint import (
    LAZY_KEYS, YAML_KEYS, CheckpointError, CheckpointSaveError, ConfigKeys, LadaCheckpointer,
)
from .launch import launch
from .output_lock import OutputDirInUseError, output_dir_lock
from .results import EVAL_RESULTS, write_eval_results
from .run_folder import RUN_CONFIG, save_run_config
from .setup import (
    add_dataset_argument, build_argument_parser, build_cfg, check_before_launch,
    command_line_cfg, merged_cfg, register_datasets, setup_cfg, summarize_run,
)
from .trainer import Trainer

__all__ = [
    "AutocastTrainer",
    "amp_dtype",
    "CheckpointError",
    "CheckpointSaveError",
    "ConfigKeys",
    "LAZY_KEYS",
    "LadaCheckpointer",
    "YAML_KEYS",
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
    "add_dataset_argument",
    "build_argument_parser",
    "build_cfg",
    "merged_cfg",
    "register_datasets",
    "setup_cfg",
    "summarize_run",
]
