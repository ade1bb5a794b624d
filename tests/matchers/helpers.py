"""Builders of hand-made matcher scenes."""
import torch

from lada.matchers import MatchInputs


def scene(levels, gt_boxes, num_classes=3):
    """MatchInputs from explicit levels [(stride, [(x, y), ...]), ...] and per-image GT
    boxes [[x0, y0, x1, y1], ...]; predictions are zeros (unused by geometric matchers)."""
    points = torch.tensor([p for _, pts in levels for p in pts], dtype=torch.float32)
    strides = torch.tensor([float(s) for s, pts in levels for _ in pts])
    boxes = [torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for b in gt_boxes]
    num_points = len(points)
    return MatchInputs(
        points=points,
        strides=strides,
        num_points_per_level=[len(pts) for _, pts in levels],
        gt_boxes=boxes,
        gt_classes=[torch.zeros(len(b), dtype=torch.long) for b in boxes],
        pred_logits=torch.zeros(len(boxes), num_points, num_classes),
        pred_boxes=torch.zeros(len(boxes), num_points, 4),
    )


def grid(stride, width, height, offset=0.5):
    """Points of a feature map of a width x height pixel image, as (stride, points)."""
    return stride, [
        ((i + offset) * stride, (j + offset) * stride)
        for j in range(height // stride)
        for i in range(width // stride)
    ]
