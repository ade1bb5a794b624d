"""Builders of hand-made and random matcher scenes."""
from dataclasses import replace

import numpy as np
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


def crowded_scene(seed, num_images=2, num_small=30, num_large=4, size=256):
    """Random crowded images: large boxes with small and medium ones around and inside
    them; random logits; predicted boxes around the points, about 5% of them inverted."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(num_images):
        wh = np.concatenate([rng.uniform(90, 200, (num_large, 2)), rng.uniform(5, 60, (num_small, 2))])
        xy = rng.uniform(0, 1, wh.shape) * (size - 1 - wh)
        images.append(np.concatenate([xy, xy + wh], axis=1).round(1).tolist())
    inputs = scene([grid(s, size, size) for s in (8, 16, 32, 64, 128)], images, num_classes=5)
    generator = torch.Generator().manual_seed(seed)
    num_points = inputs.num_points
    gt_classes = [torch.randint(0, 5, (len(b),), generator=generator) for b in images]
    pred_logits = 2 * torch.randn(num_images, num_points, 5, generator=generator)
    half = inputs.strides[None, :, None] * (0.5 + 3 * torch.rand(num_images, num_points, 2, generator=generator))
    center = inputs.points + 4 * torch.randn(num_images, num_points, 2, generator=generator)
    boxes = torch.cat([center - half, center + half], dim=2)
    inverted = torch.rand(num_images, num_points, generator=generator) < 0.05
    boxes[inverted] = boxes[inverted][:, [2, 3, 0, 1]]
    return replace(inputs, gt_classes=gt_classes, pred_logits=pred_logits, pred_boxes=boxes)


def positives_per_gt(gt_index, num_gts):
    """(R,) GT index of one image -> {gt: sorted list of its positive points}."""
    return {gt: (gt_index == gt).nonzero()[:, 0].tolist() for gt in range(num_gts)}


def hard_scene(seed, num_images=2, size=256):
    """:func:`crowded_scene` plus, in every image, the hard cases of a fidelity test: an
    exact duplicate of a box (same class), a tiny 3 x 3 box between the grid points of
    every level, a box reaching out of the image and a box of the same class overlapping
    another."""
    inputs = crowded_scene(seed, num_images, size=size)
    generator = torch.Generator().manual_seed(seed + 1000)
    boxes, classes = [], []
    for image_boxes, image_classes in zip(inputs.gt_boxes, inputs.gt_classes):
        shifted = image_boxes[1] + torch.tensor([9.0, 7.0, 15.0, 4.0])  # another area: no tie
        extra = torch.stack([
            image_boxes[0],
            torch.tensor([13.0, 13.0, 16.0, 16.0]),
            torch.tensor([size - 40.0, size - 30.0, size + 30.0, size + 20.0]),
            shifted,
        ])
        extra_classes = torch.stack([image_classes[0], torch.randint(0, 5, (), generator=generator),
                                     torch.randint(0, 5, (), generator=generator), image_classes[1]])
        boxes.append(torch.cat([image_boxes, extra]))
        classes.append(torch.cat([image_classes, extra_classes]))
    return replace(inputs, gt_boxes=boxes, gt_classes=classes)


# fidelity_scene: the hard cases for the assigners that read predicted boxes (ota, simota),
# with predicted boxes near the GT boxes so that their IoUs spread over (0, 1).
FIDELITY_SIZE = 256
TINY = [5.0, 5.0, 8.0, 8.0]  # 3 x 3 px between the stride-8 points at 4 and 12
OUT_OF_IMAGE = [220.0, 230.0, 300.0, 290.0]
SAME_CLASS_PAIR = [[100.0, 100.0, 160.0, 150.0], [120.0, 110.0, 180.0, 170.0]]


def fidelity_scene(seed: int, num_images: int = 2):
    """``crowded_scene(seed)`` with the special boxes appended to every image (the
    duplicate copies the image's first box), and every third point's predicted box
    replaced by a jittered copy of a GT box that contains it, so that many pairs have an
    IoU between 0.3 and 1."""
    inputs = crowded_scene(seed, num_images=num_images, size=FIDELITY_SIZE)
    generator = torch.Generator().manual_seed(1000 + seed)
    boxes, classes = [], []
    for image in range(num_images):
        own, own_classes = inputs.gt_boxes[image], inputs.gt_classes[image]
        extra = torch.tensor([own[0].tolist(), TINY, OUT_OF_IMAGE, *SAME_CLASS_PAIR])
        extra_classes = torch.tensor([int(own_classes[0]), 1, 2, 3, 3])
        boxes.append(torch.cat([own, extra]))
        classes.append(torch.cat([own_classes, extra_classes]))
    pred_boxes = inputs.pred_boxes.clone()
    for image in range(num_images):
        box = boxes[image]
        xy = inputs.points
        inside = ((xy[:, None] > box[None, :, :2]) & (xy[:, None] < box[None, :, 2:])).all(-1)
        first = inside.float().argmax(1)  # the first GT box containing the point
        chosen = (torch.arange(len(xy)) % 3 == 0) & inside.any(1)
        target = box[first[chosen]]
        size = (target[:, 2:] - target[:, :2]).repeat(1, 2)
        pred_boxes[image, chosen] = target + 0.15 * size * torch.randn(
            len(target), 4, generator=generator)
    return replace(inputs, gt_boxes=boxes, gt_classes=classes, pred_boxes=pred_boxes)
