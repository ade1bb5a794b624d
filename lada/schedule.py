"""The multi-step schedule at another length: the learning-rate steps and the warm-up kept
at their fractions of the schedule, one rule for the yaml configs (``SOLVER.MAX_ITER``,
:mod:`lada.engine.setup`), the LazyConfig configs (``train.max_iter``,
:mod:`lada.engine.lazy`) and the own-data recipe (:mod:`lada.data.recipe`).

Without it, a shorter ``SOLVER.MAX_ITER`` keeps the config's steps, which detectron2 then
drops as beyond the end, and its warm-up, which may last the whole run."""
from __future__ import annotations

from typing import Sequence

__all__ = ["check_steps", "scaled_schedule"]


def scaled_schedule(
    steps: Sequence[int], warmup_iters: int, old_max_iter: int, new_max_iter: int
) -> tuple[tuple[int, ...], int]:
    """``steps`` and ``warmup_iters`` of a schedule of ``old_max_iter`` iterations moved to
    one of ``new_max_iter``: each at the same fraction, rounded; steps kept within
    [1, new_max_iter - 1] (detectron2's scheduler needs them inside the schedule),
    repeated ones merged."""
    scale = new_max_iter / max(1, old_max_iter)
    moved = {min(max(1, round(s * scale)), new_max_iter - 1) for s in steps}
    return tuple(sorted(moved - {0})), int(round(warmup_iters * scale))


def check_steps(steps: Sequence[int], max_iter: int, steps_key: str, max_iter_key: str) -> None:
    """Refuses (``SystemExit`` with one line naming both keys) steps that are not strictly
    increasing within (0, ``max_iter``): detectron2's yaml path would drop them with a
    warning and keep the learning rate where the user expected it to fall."""
    steps = [int(s) for s in steps]
    if all(0 < s < max_iter for s in steps) and steps == sorted(set(steps)):
        return
    raise SystemExit(
        f"{steps_key} {tuple(steps)} must increase within (0, {max_iter_key} = {max_iter}): "
        f"set {steps_key} to steps inside the schedule, or leave it to the config (it then "
        f"follows {max_iter_key} at the config's fractions)"
    )
