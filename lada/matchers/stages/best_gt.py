"""Each point's best GT box when several GT boxes claim it, by the highest score among
its (GT, point) pairs, without a (G, R) matrix. The two reducers differ only in their
tie rule, which their names say, because the methods' positives depend on it:

- :class:`BestGTTiesToLowestIndex`: equal scores go to the lowest GT index (the first
  maximum of the dense form); accumulates over any number of parts (GT chunks). Used by
  fcos (score = minus the box area: the smallest box, detectron2's rule), atss,
  ciou_atss, aps and the preliminary match;
- :func:`best_gt_ties_to_smallest_box`: equal scores go to the smaller GT box, then to
  the lower index (FCOS's rule as a tie-break of DW's weights); all pairs at once.
"""
from __future__ import annotations

import torch

from ..contract import BACKGROUND

_NO_GT = torch.iinfo(torch.long).max

__all__ = [
    "BestGTTiesToLowestIndex",
    "assign_candidates_to_best_gt",
    "best_gt_ties_to_smallest_box",
]


class BestGTTiesToLowestIndex:
    """Each point goes to the positive GT with the highest score, accumulated over
    (gt, point, score) triples of positive pairs given in any number of parts (for
    example GT chunks), without a (G, R) matrix: the maximum over GTs of a dense matrix
    holding the triples' scores and ``-inf`` elsewhere. Ties go to the lowest GT index
    (the first maximum of the dense form, never the GTs' order otherwise); points whose
    best score is ``-inf``, or that appear in no triple, are ``BACKGROUND``."""

    def __init__(self, num_points: int, dtype: torch.dtype, device: torch.device):
        self.score = torch.full((num_points,), float("-inf"), dtype=dtype, device=device)
        self.gt = torch.full((num_points,), _NO_GT, dtype=torch.long, device=device)

    def add(self, gt: torch.Tensor, point: torch.Tensor, score: torch.Tensor) -> None:
        """Adds triples: gt (M,), point (M,) long, score (M,)."""
        score = score.to(self.score.dtype)
        best = torch.full_like(self.score, float("-inf")).scatter_reduce_(
            0, point, score, "amax"
        )  # (R,) best score of this part
        at_best = score == best.index_select(0, point)
        best_gt = torch.full_like(self.gt, _NO_GT).scatter_reduce_(
            0, point, torch.where(at_best, gt, torch.full_like(gt, _NO_GT)), "amin"
        )  # (R,) lowest GT reaching it
        tie = best == self.score
        self.gt = torch.where(
            best > self.score, best_gt, torch.where(tie, torch.minimum(self.gt, best_gt), self.gt)
        )
        self.score = torch.maximum(self.score, best)

    def gt_index(self) -> torch.Tensor:
        """(R,) long: the best GT of each point, or ``BACKGROUND``."""
        none = torch.isneginf(self.score) | (self.gt == _NO_GT)
        return torch.where(none, torch.full_like(self.gt, BACKGROUND), self.gt)


def assign_candidates_to_best_gt(
    candidate_index: torch.Tensor, scores: torch.Tensor, positive: torch.Tensor, num_points: int
) -> torch.Tensor:
    """Each point goes to the GT of highest score among the GTs for which it is a
    positive candidate (:class:`BestGTTiesToLowestIndex`: equal scores go to
    the lowest GT index): candidate points (G, K), their scores (G, K)
    and positives (G, K) -> (R,) long GT index or ``BACKGROUND``."""
    rows = torch.arange(len(candidate_index), device=candidate_index.device)
    gt = rows[:, None].expand_as(candidate_index)
    best = BestGTTiesToLowestIndex(num_points, scores.dtype, scores.device)
    best.add(gt[positive], candidate_index[positive], scores[positive])
    return best.gt_index()


def best_gt_ties_to_smallest_box(
    weights: torch.Tensor,
    pair_point: torch.Tensor,
    pair_gt: torch.Tensor,
    gt_areas: torch.Tensor,
    num_points: int,
) -> torch.Tensor:
    """Each point's highest-weighted GT among its pairs, ``BACKGROUND`` for points in no
    pair or whose pair weights are all NaN (from non-finite predictions, which make the
    loss non-finite too). Equal weights go to the smaller GT box (FCOS's rule), then to
    the lower index only between GT boxes of equal weight and area. (P,), (P,) long,
    (P,) long, (G,) -> (R,) long."""
    best = weights.new_full((num_points,), float("-inf")).scatter_reduce_(
        0, pair_point, weights, "amax"
    )
    tied = weights == best.index_select(0, pair_point)
    area = gt_areas.index_select(0, pair_gt).masked_fill(~tied, float("inf"))
    smallest = area.new_full((num_points,), float("inf")).scatter_reduce_(0, pair_point, area, "amin")
    chosen = tied & (area == smallest.index_select(0, pair_point))
    unchosen = torch.iinfo(pair_gt.dtype).max
    gt_index = pair_gt.new_full((num_points,), unchosen)
    gt_index.scatter_reduce_(0, pair_point[chosen], pair_gt[chosen], "amin")
    return gt_index.masked_fill(gt_index == unchosen, BACKGROUND)
