"""Seeded crowded scenes for the fidelity tests of the assigners that read predicted
boxes (ota, simota): ``helpers.crowded_scene`` plus the cases that break careless
implementations: an exact duplicate (same box and class), a tiny box between grid
points, a box partly outside the image, two overlapping boxes of one class, and
predicted boxes near the GT boxes so that their IoUs spread over (0, 1)."""
from dataclasses import replace

import torch
from helpers import crowded_scene

SIZE = 256
TINY = [5.0, 5.0, 8.0, 8.0]  # 3 x 3 px between the stride-8 points at 4 and 12
OUT_OF_IMAGE = [220.0, 230.0, 300.0, 290.0]
SAME_CLASS_PAIR = [[100.0, 100.0, 160.0, 150.0], [120.0, 110.0, 180.0, 170.0]]


def fidelity_scene(seed: int, num_images: int = 2):
    """``crowded_scene(seed)`` with the special boxes appended to every image (the
    duplicate copies the image's first box), and every third point's predicted box
    replaced by a jittered copy of a GT box that contains it, so that many pairs have an
    IoU between 0.3 and 1."""
    inputs = crowded_scene(seed, num_images=num_images, size=SIZE)
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
