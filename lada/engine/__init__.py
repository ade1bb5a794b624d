"""Training entry points: argument parsing, config setup and the trainer."""
from .launch import launch
from .setup import build_argument_parser, register_datasets, setup_cfg
from .trainer import Trainer

__all__ = ["Trainer", "launch", "build_argument_parser", "register_datasets", "setup_cfg"]
