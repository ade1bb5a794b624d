"""Per-step assignment statistics, the same for every matcher, for ``EventStorage``
(hence metrics.json and TensorBoard). LADA's Fig. 9 plots ``assign/pos_per_gt_mean``."""
from __future__ import annotations

from typing import Dict, List

import torch

__all__ = ["assignment_statistics"]


def assignment_statistics(
    gt_index: torch.Tensor, num_gts: List[int], num_points_per_level: List[int]
) -> Dict[str, float]:
    """gt_index (N, R) of a ``MatchResult``; GT boxes per image; points per level.

    Returns positives per image, positives per GT (mean/min/max over the GT boxes of the
    batch), the batch's GT boxes (``num_gts``), the number and the share of them left
    without any positive (never trained in this step), and each level's share of the
    positives. One host transfer for all values."""
    offsets = torch.tensor([0] + num_gts[:-1], device=gt_index.device).cumsum(0)
    foreground = gt_index >= 0
    flat = (gt_index + offsets[:, None])[foreground]
    total_gts = sum(num_gts)
    per_gt = torch.bincount(flat, minlength=total_gts).float()
    per_level = torch.stack([f.sum() for f in foreground.split(num_points_per_level, dim=1)])
    values = [foreground.sum() / gt_index.shape[0], per_level.float() / per_level.sum().clamp(min=1)]
    if total_gts:
        values += [per_gt.mean(), per_gt.min(), per_gt.max(), (per_gt == 0).sum()]
    flat_values = torch.cat([v.reshape(-1).float() for v in values]).tolist()
    stats = {"assign/pos_per_image": flat_values[0]}
    levels = flat_values[1 : 1 + len(num_points_per_level)]
    stats.update({f"assign/pos_share_level{i}": share for i, share in enumerate(levels)})
    if total_gts:
        mean, low, high, without = flat_values[1 + len(num_points_per_level):]
        stats.update({
            "assign/pos_per_gt_mean": mean,
            "assign/pos_per_gt_min": low,
            "assign/pos_per_gt_max": high,
            "assign/num_gts": float(total_gts),
            "assign/gts_without_pos": without,
            "assign/gts_without_pos_share": without / total_gts,
        })
    return stats
