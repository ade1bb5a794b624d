"""The training losses and what they consume.

- ``targets.py``: per-point targets gathered from a ``MatchResult``, the only thing a
  loss reads of the assignment.
- ``classification.py``: the classification losses (focal, QFL, VFL) and soft targets.
- ``dense.py``: ``DenseDetectionLoss``, classification + box + auxiliary-branch losses
  over dense targets.
"""
from .dense import DenseDetectionLoss
from .targets import DenseTargets, gather_targets

__all__ = ["DenseDetectionLoss", "DenseTargets", "gather_targets"]
