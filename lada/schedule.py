"""The multi-step schedule at another length: the learning-rate steps and the warm-up kept
at their fractions of the schedule, one rule for the yaml configs (``SOLVER.MAX_ITER``,
:mod:`lada.engine.setup`), the LazyConfig configs (``train.max_iter``,
:mod:`lada.engine.lazy`) and the own-data recipe (:mod:`lada.data.recipe`).

Without it, a shorter ``SOLVER.MAX_ITER`` keeps the config's steps, which detectron2 then
drops as beyond the end, and its warm-up, which may last the whole run."""
from __future__ import annotations

from typing import AbstractSet, Optional, Sequence

__all__ = ["check_steps", "moved_schedule", "scaled_schedule"]


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


def moved_schedule(
    steps: Sequence[int], warmup_iters: int, old_max_iter: int, new_max_iter: int,
    keys: tuple[str, str, str], chosen: AbstractSet[str], hint: str,
) -> tuple[dict[str, object], Optional[str]]:
    """A schedule's length changed by the user: the new values of its steps and warm-up
    keys (``keys``: the names of max_iter, steps and warm-up in the config's system), at
    the config's fractions (:func:`scaled_schedule`), each unless the user set it too
    (``chosen``: yours win), and the line that says so (None when nothing moved), ending
    with ``hint``. One rule and one message for the yaml and LazyConfig routes."""
    max_iter_key, steps_key, warmup_key = keys
    new_steps, new_warmup = scaled_schedule(steps, warmup_iters, old_max_iter, new_max_iter)
    values: dict[str, object] = {}
    moved = []
    if steps_key not in chosen:
        values[steps_key] = new_steps
        moved.append(f"steps {tuple(steps)} -> {new_steps} ({steps_key})")
    if warmup_key not in chosen:
        values[warmup_key] = new_warmup
        moved.append(f"warm-up {warmup_iters} -> {new_warmup} ({warmup_key})")
    if not moved:
        return values, None
    return values, (f"schedule: {max_iter_key} {new_max_iter} (yours) instead of the config's "
                    f"{old_max_iter}: " + ", ".join(moved) + f", at the config's fractions of "
                    f"its schedule; {hint}")


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
