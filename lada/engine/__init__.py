"""Training entry points: argument parsing, config setup, the trainer and its checkpointer."""
from .checkpoint import CheckpointError, LadaCheckpointer
from .launch import launch
from .setup import build_argument_parser, register_datasets, setup_cfg
from .trainer import Trainer

__all__ = [
    "CheckpointError",
    "LadaCheckpointer",
    "Trainer",
    "launch",
    "build_argument_parser",
    "register_datasets",
    "setup_cfg",
]
