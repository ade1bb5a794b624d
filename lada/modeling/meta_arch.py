"""``LadaFCOS``: an FCOS-family detector whose label assignment is a pluggable matcher.

Letters: N images, R anchor points over all levels, C classes.
"""
from __future__ import annotations

import functools
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import batched_nms, cat
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransformLinear
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import nn

from ..harmless_warnings import MESHGRID, ignoring
from ..matchers import MatchInputs, Matcher, build_matcher, check_result
from .head import FCOSHead
from .losses import build_loss, check_loss_fits_matcher
from .statistics import assignment_statistics

__all__ = ["LadaFCOS"]

SCORE_THRESH_ON = ("combined", "cls")
TEST_SCORES = ("geometric_mean", "product")


def _in_float32(forward_training):
    """Runs ``forward_training`` on float32 head outputs with autocast disabled. Under
    mixed precision (``SOLVER.AMP``) backbone and head run in float16 or bfloat16, while
    matching (every matcher receives float32 ``MatchInputs``) and the losses (GIoU, IoU
    targets, focal, BCE: logs, divisions and sums over many points) stay float32;
    gradients flow back through the casts into the head."""

    @functools.wraps(forward_training)
    def wrapper(self, images, features, predictions, gt_instances):
        predictions = [[x.float() for x in per_level] for per_level in predictions]
        with torch.autocast(images.tensor.device.type, enabled=False):
            return forward_training(self, images, features, predictions, gt_instances)

    return wrapper


@META_ARCH_REGISTRY.register()
class LadaFCOS(DenseDetector):
    """FCOS (detectron2's, with one anchor point per location, box deltas in strides)
    whose training targets come from ``matcher`` and whose losses come from ``loss``
    (``DenseDetectionLoss`` or ``PairwiseWeightedLoss``, through its ``targets``); a loss
    that cannot consume the kind of result the matcher declares is refused here, and
    every result is held to that declaration.
    Inference equals detectron2's FCOS: score sqrt(sigmoid(cls) * sigmoid(aux)),
    per-level top-k, class-wise NMS; ``test_score="product"`` scores
    sigmoid(cls) * sigmoid(aux) instead (the DW code); ``test_score_thresh_on="cls"``
    thresholds the class probability instead of the score, as the ATSS and PAA code
    does. A head without auxiliary branch scores sigmoid(cls)."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        head: nn.Module,
        head_in_features: List[str],
        matcher: Matcher,
        loss: nn.Module,
        num_classes: int,
        anchor_offset: float = 0.0,
        max_iter: int = 1,
        test_score_thresh: float = 0.2,
        test_score_thresh_on: str = "combined",
        test_score: str = "geometric_mean",
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.6,
        max_detections_per_image: int = 100,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
    ):
        super().__init__(backbone, head, head_in_features, pixel_mean=pixel_mean, pixel_std=pixel_std)
        shapes = backbone.output_shape()
        strides = [shapes[name].stride for name in self.head_in_features]
        # An anchor point is represented by a box of side = stride, centred on it.
        self.anchor_generator = DefaultAnchorGenerator(
            sizes=[[s] for s in strides], aspect_ratios=[1.0], strides=strides, offset=anchor_offset
        )
        self.box2box_transform = Box2BoxTransformLinear(normalize_by_size=True)
        check_loss_fits_matcher(loss, matcher)
        _check_aux_branch(head, loss)
        self.matcher = matcher
        self.result_kind = type(matcher).METHOD.result  # every result is held to it
        self.loss = loss
        self.num_classes = num_classes
        self.max_iter = max_iter
        if test_score_thresh_on not in SCORE_THRESH_ON:
            raise ValueError(
                f"MODEL.FCOS.SCORE_THRESH_ON must be one of {SCORE_THRESH_ON}, got '{test_score_thresh_on}'"
            )
        if test_score not in TEST_SCORES:
            raise ValueError(f"MODEL.FCOS.TEST_SCORE must be one of {TEST_SCORES}, got '{test_score}'")
        self.test_score_thresh = test_score_thresh
        self.test_score = test_score
        self.test_score_thresh_on = test_score_thresh_on
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        in_features = cfg.MODEL.FCOS.IN_FEATURES
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(
                f"MODEL.FCOS.IN_FEATURES: {missing} not produced by the backbone ({sorted(shapes)})"
            )
        return {
            "backbone": backbone,
            "head": FCOSHead(cfg, [shapes[f] for f in in_features]),
            "head_in_features": in_features,
            "matcher": build_matcher(cfg),
            "loss": build_loss(cfg),
            "num_classes": cfg.MODEL.FCOS.NUM_CLASSES,
            "anchor_offset": cfg.MODEL.ANCHOR_GENERATOR.OFFSET,
            "max_iter": cfg.SOLVER.MAX_ITER,
            "test_score_thresh": cfg.MODEL.FCOS.SCORE_THRESH_TEST,
            "test_score_thresh_on": cfg.MODEL.FCOS.SCORE_THRESH_ON,
            "test_score": cfg.MODEL.FCOS.TEST_SCORE,
            "test_topk_candidates": cfg.MODEL.FCOS.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": cfg.MODEL.FCOS.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @_in_float32
    def forward_training(
        self,
        images: ImageList,
        features: List[torch.Tensor],
        predictions: List[List[torch.Tensor]],
        gt_instances: List[Instances],
    ) -> Dict[str, torch.Tensor]:
        storage = get_event_storage()
        inputs, logits, pred_boxes, pred_aux = self._match_inputs(
            features, predictions, gt_instances, storage.iter
        )
        match = self.matcher(inputs)
        check_result(match, self.result_kind)
        gt_boxes, gt_classes = inputs.gt_boxes, inputs.gt_classes
        targets = self.loss.targets(match, gt_boxes, gt_classes)
        storage.put_scalars(**assignment_statistics(
            match.gt_index, [len(b) for b in gt_boxes], inputs.num_points_per_level
        ))
        output = self.loss(inputs.points, logits, pred_boxes, pred_aux, targets)
        storage.put_scalars(**output.normalizers)
        return output.losses

    @torch.no_grad()
    def assignment_inputs(self, batched_inputs: List[Dict], iteration: int = 0) -> MatchInputs:
        """The ``MatchInputs`` the matcher receives in a training step on
        ``batched_inputs`` (dicts with "image" and "instances", as detectron2's training
        mapper makes them) at the current weights and ``iteration``, without gradients:
        for visualising and analysing assignments outside training."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        features = [features[name] for name in self.head_in_features]
        predictions = [[p.float() for p in level] for level in self.head(features)]
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        return self._match_inputs(features, predictions, gt_instances, iteration)[0]

    def _match_inputs(
        self,
        features: List[torch.Tensor],
        predictions: List[List[torch.Tensor]],
        gt_instances: List[Instances],
        iteration: int,
    ) -> Tuple[MatchInputs, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The matcher's inputs from the head's predictions, with the flattened logits
        (N, R, C), decoded boxes (N, R, 4) and auxiliary-branch logits ``pred_aux`` (N, R)
        the losses use."""
        logits, deltas, pred_aux = self._flatten_predictions(predictions)
        anchors = Boxes.cat(self._point_boxes(features)).tensor  # (R, 4)
        pred_boxes = self._decode(deltas, anchors)  # (N, R, 4)
        gt_boxes = [x.gt_boxes.tensor for x in gt_instances]
        _check_gt_boxes(gt_boxes)
        inputs = MatchInputs(
            points=(anchors[:, :2] + anchors[:, 2:]) / 2,
            strides=anchors[:, 2] - anchors[:, 0],
            num_points_per_level=[f.shape[-2] * f.shape[-1] for f in features],
            gt_boxes=gt_boxes,
            gt_classes=[x.gt_classes for x in gt_instances],
            pred_logits=logits.detach(),
            pred_boxes=pred_boxes.detach(),
            pred_aux=None if pred_aux is None else pred_aux.detach(),
            iteration=iteration,
            max_iter=self.max_iter,
        )
        return inputs, logits, pred_boxes, pred_aux

    def _point_boxes(self, features: List[torch.Tensor]) -> List[Boxes]:
        """The point of each location of each level as a box of side = stride, (R_l, 4)
        per level (detectron2's anchor generator, whose meshgrid warning carries no
        action: :mod:`lada.harmless_warnings`)."""
        with ignoring(MESHGRID):
            return self.anchor_generator(features)

    def forward_inference(
        self, images: ImageList, features: List[torch.Tensor], predictions: List[List[torch.Tensor]]
    ) -> List[Instances]:
        logits, deltas, pred_aux = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        anchors = self._point_boxes(features)
        results = []
        for image, image_size in enumerate(images.image_sizes):
            scores, thresh = self._test_scores(
                [x[image] for x in logits], [x[image] for x in pred_aux] if pred_aux else None
            )
            detections = Instances.cat([
                self._decode_level(level_anchors, level_scores, level_deltas[image], thresh, image_size)
                for level_anchors, level_scores, level_deltas in zip(anchors, scores, deltas)
            ])
            keep = batched_nms(
                detections.pred_boxes.tensor,
                detections.scores,
                detections.pred_classes,
                self.test_nms_thresh,
            )
            results.append(detections[keep[: self.max_detections_per_image]])
        return results

    def _decode_level(
        self,
        anchors: Boxes,
        scores: torch.Tensor,
        deltas: torch.Tensor,
        score_thresh: float,
        image_size: Tuple[int, int],
    ) -> Instances:
        """One level of one image: anchors (R_l, 4), scores (R_l, C), deltas (R_l, 4) ->
        the (point, class) pairs scoring above ``score_thresh``, at most
        ``test_topk_candidates`` of the best, with their decoded boxes.

        As detectron2's ``_decode_per_level_predictions``, except that the top k are a
        slice of the sorted candidates rather than ``min(k, number of candidates)`` in
        Python, which a trace (``tools/export_model.py``) would freeze at the sample
        image's count; and the ``score_thresh`` given is used (v0.6's multi-level
        version reads ``self.test_score_thresh`` instead)."""
        keep = scores > score_thresh
        candidate_scores, order = scores[keep].sort(descending=True)
        order = order[: self.test_topk_candidates]
        point_index, class_index = torch.nonzero(keep)[order].unbind(dim=1)
        boxes = self.box2box_transform.apply_deltas(deltas[point_index], anchors.tensor[point_index])
        return Instances(
            image_size,
            pred_boxes=Boxes(boxes),
            scores=candidate_scores[: self.test_topk_candidates],
            pred_classes=class_index,
        )

    def _test_scores(
        self, logits: List[torch.Tensor], pred_aux: Optional[List[torch.Tensor]]
    ) -> Tuple[List[torch.Tensor], float]:
        """Per level, logits (R_l, C) and auxiliary-branch logits (R_l, 1) of one image -> detection
        scores (R_l, C), ``geometric_mean`` sqrt(sigmoid(cls) * sigmoid(aux)) or
        ``product`` sigmoid(cls) * sigmoid(aux), and the threshold they are compared
        with. ``combined`` thresholds that score (detectron2's FCOS, the DW code);
        ``cls`` thresholds the class probability before the product (ATSS, PAA and LADA
        code): the scores of points below it are set to -inf and every finite score
        passes. Without an auxiliary branch (``pred_aux`` None) the score is
        sigmoid(cls), which both settings threshold alike (TOOD, RTMDet)."""
        if pred_aux is None:
            return [x.sigmoid() for x in logits], self.test_score_thresh
        scores = [x.sigmoid() * y.sigmoid() for x, y in zip(logits, pred_aux)]
        if self.test_score == "geometric_mean":
            scores = [torch.sqrt(score) for score in scores]
        if self.test_score_thresh_on == "combined":
            return scores, self.test_score_thresh
        scores = [
            score.masked_fill(x.sigmoid() <= self.test_score_thresh, float("-inf"))
            for score, x in zip(scores, logits)
        ]
        return scores, float("-inf")

    def _flatten_predictions(
        self, predictions: List[List[torch.Tensor]]
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Per-level head outputs -> logits (N, R, C), deltas (N, R, 4), pred_aux (N, R),
        None without an auxiliary branch."""
        logits, deltas, pred_aux = self._transpose_dense_predictions(
            predictions, [self.num_classes, 4, 1]
        )
        aux = cat(pred_aux, dim=1).squeeze(dim=2) if pred_aux else None
        return cat(logits, dim=1), cat(deltas, dim=1), aux

    def _decode(self, deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """deltas (N, R, 4), anchors (R, 4) -> boxes (N, R, 4), XYXY pixels."""
        num_images = deltas.shape[0]
        flat = self.box2box_transform.apply_deltas(
            deltas.reshape(-1, 4), anchors.repeat(num_images, 1)
        )
        return flat.view(num_images, -1, 4)


def _check_aux_branch(head: nn.Module, loss: nn.Module) -> None:
    """Refuses a head and a loss that disagree on the auxiliary branch
    (``MODEL.FCOS.AUX_BRANCH none``: a LazyConfig sets ``model.head.with_aux`` and
    ``model.loss.aux_branch`` apart): an unused branch would go untrained, a missing one
    fail at the first step. A loss without ``aux_branch`` (DW's pairwise loss) needs one."""
    has_aux = getattr(head, "aux_pred", True) is not None
    needs_aux = getattr(loss, "aux_branch", "") != "none"
    if has_aux != needs_aux:
        raise ValueError(
            f"MODEL.FCOS.AUX_BRANCH: the head {'has' if has_aux else 'has no'} auxiliary branch "
            f"but the loss ({type(loss).__name__}) {'needs one' if needs_aux else 'has none'}; in "
            "a LazyConfig set model.head.with_aux=False together with "
            "model.loss.aux_branch='none'"
        )


def _check_gt_boxes(gt_boxes: List[torch.Tensor]) -> None:
    """Raises on non-finite or empty GT boxes (one host sync per batch, not per GT)."""
    if not gt_boxes:
        return
    boxes = torch.cat(gt_boxes)
    bad = ~(torch.isfinite(boxes).all(dim=1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    if bad.any():
        counts = torch.tensor([len(b) for b in gt_boxes]).cumsum(0)
        first = int(bad.nonzero()[0])
        image = int((counts <= first).sum())
        raise ValueError(
            f"GT box {boxes[first].tolist()} of image {image} in the batch is degenerate or "
            "not finite (XYXY with x1 > x0 and y1 > y0 is required); check the dataset's "
            "annotations."
        )
