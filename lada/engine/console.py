"""What a run shows on the console: detectron2's long start-up records (the environment
report, the command line, the config file, the full config and the model, about 650 of a
quick run's 700 lines) go to ``OUTPUT_DIR/log.txt`` only, with one console line saying
where; every other record goes to both, as detectron2 logs it.

The records are recognised by the start of their message, as detectron2's
``default_setup`` and ``DefaultTrainer.build_model`` (and lada's own set-ups, which log the
same records) write them."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

__all__ = ["LOG_FILE_ONLY", "keep_dumps_in_log_file"]

#: Starts of the messages kept out of the console.
LOG_FILE_ONLY = (
    "Environment info:",
    "Command line arguments:",
    "Contents of args.config_file=",
    "Running with full config:",
    "Model:\n",
)
# The loggers whose console handlers detectron2's setup_logger makes: detectron2's own and
# lada's (which logs the LazyConfig tool's model).
_LOGGERS = ("detectron2", "lada")


class _LogFileOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        return not message.startswith(LOG_FILE_ONLY)


_FILTER = _LogFileOnly()


def keep_dumps_in_log_file(output_dir: str) -> None:
    """Sets up detectron2's and lada's loggers for this process (detectron2's
    ``setup_logger``, cached: ``default_setup`` and the set-ups that follow get the same
    handlers), puts the filter on their console handlers and logs where the dumps are.
    Call it before ``default_setup`` (or what stands for it) logs them."""
    rank = comm.get_rank()
    setup_logger(output_dir, distributed_rank=rank)  # as default_setup calls it
    setup_logger(output_dir, distributed_rank=rank, name="lada")
    for name in _LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if getattr(handler, "stream", None) in (sys.stdout, sys.stderr):
                handler.addFilter(_FILTER)
    if output_dir:
        logging.getLogger("detectron2").info(
            "environment, command line, config and model: in %s",
            Path(output_dir).resolve() / ("log.txt" if rank == 0 else f"log.txt.rank{rank}"))
