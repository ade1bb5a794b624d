"""``LadaFCOS`` inference as one function of an image batch that ``torch.export`` accepts
with a dynamic height, width and batch size: the graph every export format is made from.

Letters: N images, K detections, R_l points of level l, C classes.
"""
from __future__ import annotations

import copy
from typing import Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import nms

__all__ = ["DetectionGraph", "SingleChannelConv"]

Detections = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class SingleChannelConv(nn.Module):
    """A convolution with one output channel computed as a two-channel one whose second
    channel is zero, then summed over the channels: the same values. torch.export's fake
    convolution (torch 2.14) guards a one-channel output on H x W > 1, which would refuse
    the 1 x 1 feature maps of small images (P7 of any image up to 128 px); two channels
    do not, and the sum (rather than a slice, a view) makes a new tensor whose layout the
    exporter need not question."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.out_channels != 1:
            raise ValueError(f"SingleChannelConv replaces a conv with one output channel, got {conv}")
        self.conv = conv
        self.conv.weight = nn.Parameter(torch.cat([conv.weight, torch.zeros_like(conv.weight)]).detach())
        if conv.bias is not None:
            self.conv.bias = nn.Parameter(torch.cat([conv.bias, torch.zeros_like(conv.bias)]).detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, 1, H', W')."""
        return self.conv(x).sum(dim=1, keepdim=True)


def _exportable_head(head: nn.Module) -> nn.Module:
    """A copy of ``head`` whose one-output-channel convolutions are
    :class:`SingleChannelConv`; the model's own head is left as it is."""
    head = copy.deepcopy(head)
    for name, module in list(head.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d) and child.out_channels == 1:
                setattr(module, child_name, SingleChannelConv(child))
    return head


class DetectionGraph(nn.Module):
    """``model`` (a ``LadaFCOS``) in eval mode as a function of a batch of images of one
    size: ``images`` (N, 3, H, W) float32, ``INPUT.FORMAT`` channel order, values 0-255,
    at the resolution the model sees -> ``boxes`` (K, 4) XYXY px, ``scores`` (K,),
    ``classes`` (K,) int64, ``image_index`` (K,) int64: the detections of every image,
    grouped by image in order, by decreasing score within an image.

    Each image gets the detections ``model([{"image": image}])`` gives it: normalisation,
    zero padding to the backbone's size divisibility (integer arithmetic on the symbolic
    size), backbone and head (the model's modules), the points of every level, the
    model's test scores and threshold, per-level top-k, class-wise NMS, the
    ``TEST.DETECTIONS_PER_IMAGE`` best, the clip to the image and detectron2's removal of
    empty boxes. Where the eager model loops over images and takes Python branches on
    counts, the graph works on the whole batch with tensors: the top k of all (point,
    class) pairs then the threshold (the same pairs as the threshold then the top k), one
    NMS over (image, class) groups, the per-image limit from a cumulative count.
    Matching and losses are training-only: the graph holds neither."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if model.training:
            raise ValueError("the model must be in eval mode (model.eval()) to be exported")
        self.backbone = model.backbone
        self.head = _exportable_head(model.head)
        generator = model.anchor_generator
        if any(len(cell) != 1 for cell in generator.cell_anchors):
            raise ValueError("the export graph expects one anchor per point, as LadaFCOS makes")
        # the anchor generator's: per level, the stride and the anchor box at the origin (L, 4)
        self.strides = list(generator.strides)
        self.anchor_offset = generator.offset
        self.register_buffer("cell_anchors", torch.cat(list(generator.cell_anchors)), persistent=False)
        self.register_buffer("pixel_mean", model.pixel_mean.clone(), persistent=False)
        self.register_buffer("pixel_std", model.pixel_std.clone(), persistent=False)
        self.head_in_features = list(model.head_in_features)
        self.size_divisibility = max(model.backbone.size_divisibility, 1)
        self.num_classes = model.num_classes
        self.box2box_transform = model.box2box_transform
        self.test_scores = model._test_scores  # the model's scores and threshold
        self.topk_candidates = model.test_topk_candidates
        self.nms_thresh = model.test_nms_thresh
        self.max_detections_per_image = model.max_detections_per_image

    def forward(self, images: torch.Tensor) -> Detections:
        num_images, _, height, width = images.shape
        features = self.backbone(self._pad((images - self.pixel_mean) / self.pixel_std))
        features = [features[name] for name in self.head_in_features]
        logits, deltas, pred_aux = ([x.flatten(2) for x in per_level] for per_level in self.head(features))
        scores, thresh = self.test_scores(logits, pred_aux or None)  # (N, C, R_l) per level; [] without aux branch
        candidates = [
            self._candidates(level, level_scores, level_deltas, feature.shape[-1], thresh)
            for level, (level_scores, level_deltas, feature) in enumerate(zip(scores, deltas, features))
        ]
        scores, classes, image_index, deltas, anchors = (torch.cat(x) for x in zip(*candidates))
        boxes = self.box2box_transform.apply_deltas(deltas, anchors)
        keep = _batched_nms(boxes, scores, image_index * self.num_classes + classes, self.nms_thresh)
        keep = keep[_first_per_group(image_index[keep], num_images, self.max_detections_per_image)]
        boxes, scores, classes, image_index = boxes[keep], scores[keep], classes[keep], image_index[keep]
        boxes = _clip(boxes, height, width)
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[nonempty], scores[nonempty], classes[nonempty], image_index[nonempty]

    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 3, H', W'), zeros below and right up to the next multiples
        of the size divisibility, as detectron2's ``ImageList.from_tensors``."""
        height, width = images.shape[-2:]
        step = self.size_divisibility
        padded_height, padded_width = (height + step - 1) // step * step, (width + step - 1) // step * step
        return F.pad(images, (0, padded_width - width, 0, padded_height - height))

    def _candidates(
        self, level: int, scores: torch.Tensor, deltas: torch.Tensor, grid_width: int, thresh: float
    ) -> Tuple[torch.Tensor, ...]:
        """One level of every image: scores (N, C, R_l), deltas (N, 4, R_l) of a grid
        ``grid_width`` points wide -> the M (point, class) pairs of each image among its
        ``test_topk_candidates`` best that score above ``thresh``: scores (M,), classes
        (M,), image index (M,), deltas (M, 4), anchor boxes (M, 4)."""
        # sizes as tensors: the ONNX exporter converts a remainder by a symbolic int to no op
        num_points = _as_tensor(scores.shape[2], scores.device)
        flat = scores.flatten(1)  # (N, C * R_l), class-major
        top_scores, top_index = flat.topk(torch.sym_min(self.topk_candidates, flat.shape[1]), dim=1)
        image_index, rank = (top_scores > thresh).nonzero().unbind(dim=1)
        pair = top_index[image_index, rank]
        point = pair % num_points
        classes = torch.div(pair, num_points, rounding_mode="floor")
        anchors = self.anchors_at(level, point, _as_tensor(grid_width, scores.device))
        return top_scores[image_index, rank], classes, image_index, deltas[image_index, :, point], anchors

    def anchors_at(self, level: int, points: torch.Tensor, grid_width: torch.Tensor) -> torch.Tensor:
        """The anchor boxes (M, 4) of ``points`` (M,), indices into level ``level``'s
        grid of ``grid_width`` columns, row by row: as ``model.anchor_generator`` makes
        them (its stride, offset and cell anchor), for these points only. The generator's
        own grid, a float ``arange`` over a symbolic size, would make the exporter
        specialise the image size."""
        column = points % grid_width
        row = torch.div(points, grid_width, rounding_mode="floor")
        cell = torch.stack([column, row, column, row], dim=1).to(torch.float32)
        return (cell + self.anchor_offset) * self.strides[level] + self.cell_anchors[level]


def _as_tensor(size: int, device: torch.device) -> torch.Tensor:
    """A (symbolic) size as a 0-dim int64 tensor."""
    return torch.scalar_tensor(size, dtype=torch.long, device=device)


def _batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, thresh: float
) -> torch.Tensor:
    """NMS within each group: boxes (M, 4), scores (M,), groups (M,) int64 -> the indices
    kept, by decreasing score. Each group is moved by a multiple of the extent of all
    boxes so that no two groups overlap (torchvision's ``batched_nms`` moves by the
    largest coordinate, which lets boxes with a coordinate below -1 overlap another
    group; with none, the kept boxes are the same); a zero joins the extent so that it
    exists for no box."""
    extent = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)])
    span = extent.max() - extent.min() + 1
    return nms(boxes + (groups.to(boxes.dtype) * span)[:, None], scores, thresh)


def _first_per_group(groups: torch.Tensor, num_groups: int, limit: int) -> torch.Tensor:
    """groups (M,) int64 in [0, num_groups), in the order of decreasing score -> the
    positions of each group's first ``limit`` elements, grouped by group in order."""
    count = groups.shape[0]
    order = torch.argsort(groups * count + torch.arange(count, device=groups.device))
    groups = groups[order]
    member = (groups[:, None] == torch.arange(num_groups, device=groups.device)[None, :]).long()
    rank = (member.cumsum(dim=0) * member).sum(dim=1) - 1  # place within its group
    return order[rank < limit]


def _clip(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """boxes (K, 4) clipped to [0, width] x [0, height], as detectron2's ``Boxes.clip``."""
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    return torch.stack(
        [x0.clamp(0, width), y0.clamp(0, height), x1.clamp(0, width), y1.clamp(0, height)], dim=1
    )
