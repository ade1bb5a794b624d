"""Training entry points: argument parsing, config setup, process launch, the trainer, its
mixed-precision step and its checkpointer."""
from .amp import AutocastTrainer, amp_dtype
from .checkpoint import CheckpointError, LadaCheckpointer
from .launch import launch
from .setup import build_argument_parser, register_datasets, setup_cfg
from .trainer import Trainer

__all__ = [
    "AutocastTrainer",
    "amp_dtype",
    "CheckpointError",
    "LadaCheckpointer",
    "Trainer",
    "launch",
    "build_argument_parser",
    "register_datasets",
    "setup_cfg",
]
