"""Independent per-GT reference loops of PAA and LADA, written from docs/methods/
(README.md, paa.md and lada.md) and the official PAA code, with torchvision's and scikit-learn's
functions: they share no code with ``lada.matchers``. Slow on purpose: one GT at a time.
"""
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss


def sklearn_gmm(scores: np.ndarray, max_iter: int = 100) -> GaussianMixture:
    """scikit-learn's mixture on one GT's (n,) scores, initialised as PAA's code does."""
    gmm = GaussianMixture(n_components=2, weights_init=[0.5, 0.5],
                          means_init=[[scores.min()], [scores.max()]],
                          precisions_init=[[[1.0]], [[1.0]]], max_iter=max_iter, tol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gmm.fit(scores[:, None])


def gmm_positives(scores: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """paa.md steps 5-6 for one GT: sort the scores; the positives are the sorted candidates
    up to and including the first component-0 member of highest log-likelihood; one
    candidate or an empty component 0 -> all positive. (n,) -> (n,) bool."""
    order = np.argsort(scores, kind="stable")
    positive = np.ones(len(scores), dtype=bool)
    if len(scores) == 1:
        return positive
    gmm = sklearn_gmm(scores, max_iter)
    ranked = scores[order][:, None]
    component, log_lik = gmm.predict(ranked), gmm.score_samples(ranked)
    if not (component == 0).any():
        return positive
    best = max(log_lik[i] for i in range(len(scores)) if component[i] == 0)
    cutoff = min(i for i in range(len(scores)) if component[i] == 0 and log_lik[i] == best)
    positive[:] = False
    positive[order[: cutoff + 1]] = True
    return positive


def preliminary_match(inputs, image, threshold=0.1):
    """paa.md step 1, as maskrcnn-benchmark's Matcher(0.1, 0.1, True): (R,) GT or -1."""
    half = 4 * inputs.strides[:, None]  # anchor boxes of side 8 s
    anchors = torch.cat([inputs.points - half, inputs.points + half], dim=1)
    iou = box_iou(inputs.gt_boxes[image], anchors)  # (G, R)
    best_iou, best_gt = iou.max(dim=0)
    matched = torch.where(best_iou >= threshold, best_gt, torch.full_like(best_gt, -1))
    for gt in range(len(iou)):
        highest = iou[gt].max()
        if highest > 0:
            for point in (iou[gt] == highest).nonzero()[:, 0].tolist():
                matched[point] = best_gt[point]  # restored to its own best GT
    return matched


def inside(points, box):
    """README.md: every side distance > 0.01. points (P, 2), box (4,) -> (P,) bool."""
    return ((points - box[:2]) > 0.01).all(dim=1) & ((box[2:] - points) > 0.01).all(dim=1)


def anchor_losses(inputs, image, gt, points):
    """README.md: focal loss summed over classes and GIoU loss (predicted boxes with
    x1 = max(x0, x1), y1 = max(y0, y1)) of the given points for one GT, float64."""
    logits = inputs.pred_logits[image, points].double()
    target = torch.zeros_like(logits)
    target[:, inputs.gt_classes[image][gt]] = 1
    cls = sigmoid_focal_loss(logits, target, alpha=0.25, gamma=2.0).sum(dim=1)
    boxes = inputs.pred_boxes[image, points].double().clone()
    boxes[:, 2] = torch.maximum(boxes[:, 0], boxes[:, 2])
    boxes[:, 3] = torch.maximum(boxes[:, 1], boxes[:, 3])
    gt_box = inputs.gt_boxes[image][gt].double().expand_as(boxes)
    return cls, generalized_box_iou_loss(boxes, gt_box)


def lowest_per_level(inputs, points, scores, k):
    """Per level, the k lowest-score points among ``points`` (list) -> list of points."""
    chosen, start = [], 0
    for count in inputs.num_points_per_level:
        on_level = [(scores[i], p) for i, p in enumerate(points) if start <= p < start + count]
        chosen += [p for _, p in sorted(on_level)[:k]]
        start += count
    return chosen


def paa_positives(inputs, image, inside_gt=True, topk=9):
    """PAA (paa.md) of one image, one GT at a time: {gt: sorted list of positive points}."""
    matched = preliminary_match(inputs, image)
    result = {}
    for gt, box in enumerate(inputs.gt_boxes[image]):
        points = (matched == gt).nonzero()[:, 0]
        if inside_gt:
            points = points[inside(inputs.points[points], box)]
        if len(points) == 0:
            result[gt] = []
            continue
        cls, reg = anchor_losses(inputs, image, gt, points)
        scores = (cls + reg).tolist()
        candidates = lowest_per_level(inputs, points.tolist(), scores, topk)
        score_of = dict(zip(points.tolist(), scores))
        candidate_scores = np.array([score_of[p] for p in candidates], dtype=np.float32)
        positive = gmm_positives(candidate_scores.astype(np.float64))
        result[gt] = sorted(p for p, keep in zip(candidates, positive) if keep)
    return result


def lada_positives(inputs, image, radius=2.5, lambda_reg=1.5, lambda_dev=1.0, topk=9, topm=20):
    """LADA Algorithm 1 (lada.md) of one image, one GT at a time:
    {gt: sorted list of positive points}."""
    matched = preliminary_match(inputs, image)
    result = {}
    for gt, box in enumerate(inputs.gt_boxes[image]):
        points = (matched == gt).nonzero()[:, 0]
        xy, strides = inputs.points[points], inputs.strides[points]
        width, height = (box[2] - box[0]).item(), (box[3] - box[1]).item()
        short = min(width, height)
        center = (box[:2] + box[2:]) / 2
        in_epcp = ((xy[:, 0] - center[0]).abs() <= radius * strides * width / short) & (
            (xy[:, 1] - center[1]).abs() <= radius * strides * height / short
        )
        keep = inside(xy, box) & in_epcp  # C1
        points, xy = points[keep], xy[keep]
        if len(points) == 0:
            result[gt] = []
            continue
        cls, reg = anchor_losses(inputs, image, gt, points)
        left, top = xy[:, 0] - box[0], xy[:, 1] - box[1]
        right, bottom = box[2] - xy[:, 0], box[3] - xy[:, 1]
        dev = (left - right).abs() / (left + right) + (top - bottom).abs() / (top + bottom)
        cla = cls + lambda_reg * reg + lambda_dev * (dev.double() - 1).clamp(min=0)
        scores = cla.tolist()
        c2 = lowest_per_level(inputs, points.tolist(), scores, topk)
        score_of = dict(zip(points.tolist(), scores))
        c3 = sorted(c2, key=lambda p: score_of[p])[:topm]
        threshold = sum(score_of[p] for p in c3) / len(c3)
        positive = [p for p in c3 if score_of[p] < threshold] or c3[:1]
        result[gt] = sorted(positive)
    return result
