"""Comparison study: trains configs for several seeds on one schedule, through
``train_net.py``, and reports mean and standard deviation per config (``python -m
lada.study``; docs/studies/running.md)."""
from .report import ConfigSummary, bar_chart, markdown_report, summarize, table_metrics, welch_p_value
from .runs import StudyError, StudyRun, final_metrics, plan_runs, run_study_run

__all__ = [
    "ConfigSummary",
    "StudyError",
    "StudyRun",
    "bar_chart",
    "final_metrics",
    "markdown_report",
    "plan_runs",
    "run_study_run",
    "summarize",
    "table_metrics",
    "welch_p_value",
]
