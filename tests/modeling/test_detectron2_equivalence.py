"""With matcher ``fcos`` and the centerness branch, LadaFCOS is detectron2's FCOS: same
assignments, same losses for the same weights and batch."""
import pytest
import torch
from conftest import NUM_CLASSES, make_batch, random_boxes, small_cfg
from detectron2.modeling import build_model
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from lada.matchers import MatchInputs, build_matcher

LOSS_NAMES = {"loss_cls": "loss_fcos_cls", "loss_box_reg": "loss_fcos_loc",
              "loss_centerness": "loss_fcos_ctr"}


def _pair():
    """Our model and detectron2's FCOS sharing one backbone and one head."""
    cfg = small_cfg()
    ours = build_model(cfg)
    for parameter in ours.head.parameters():  # away from the initial, near-zero outputs
        parameter.data.add_(torch.randn_like(parameter) * 0.02)
    theirs = FCOS(
        backbone=ours.backbone,
        head=ours.head,
        head_in_features=cfg.MODEL.FCOS.IN_FEATURES,
        num_classes=NUM_CLASSES,
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
    )
    return ours, theirs


def _detectron2_fcos_gt_index(fcos: FCOS, anchors, gts) -> torch.Tensor:
    """(N, R) index of the GT each anchor point is matched to (-1: background) by
    detectron2's FCOS rule, through whichever API this detectron2 has: v0.6's
    ``match_anchors(anchors, gt_instances)`` gives the indices; main's
    ``_match_anchors(gt_boxes, anchors)`` gives an (M, R) quality matrix per image, of
    which an anchor takes the best GT when its quality is positive (main's
    ``label_anchors``)."""
    if hasattr(fcos, "match_anchors"):
        return torch.stack(fcos.match_anchors(anchors, gts))
    indices = []
    for instances in gts:
        quality = fcos._match_anchors(instances.gt_boxes, anchors)  # (M, R)
        best, index = quality.max(dim=0)
        indices.append(index.masked_fill(best < 1e-5, -1))
    return torch.stack(indices)


def test_losses_equal_detectron2_fcos_over_two_steps():
    ours, theirs = _pair()
    ours.train(), theirs.train()
    for step in range(2):  # the second step checks the EMA normaliser as well
        batch = make_batch([3, 7])
        with EventStorage(step):
            mine = ours(batch)
            reference = theirs(batch)
        assert set(mine) == set(LOSS_NAMES)
        for name, their_name in LOSS_NAMES.items():
            torch.testing.assert_close(mine[name], reference[their_name], rtol=1e-5, atol=1e-6)
        assert mine["loss_box_reg"] > 0


def test_inference_equals_detectron2_fcos():
    ours, theirs = _pair()
    ours.eval(), theirs.eval()
    theirs.test_score_thresh = ours.test_score_thresh = 0.05
    batch = [{"image": b["image"]} for b in make_batch([0, 0])]
    with torch.no_grad():
        mine, reference = ours(batch), theirs(batch)
    for a, b in zip(mine, reference):
        a, b = a["instances"], b["instances"]
        assert len(a) == len(b) > 0
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor)
        torch.testing.assert_close(a.scores, b.scores)
        assert torch.equal(a.pred_classes, b.pred_classes)


@pytest.mark.parametrize("num_gt", [1, 5, 40])
def test_fcos_matcher_equals_detectron2_match_anchors(num_gt):
    ours, theirs = _pair()
    sizes = [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    features = [torch.zeros(1, 1, h, w) for h, w in sizes]
    anchors = theirs.anchor_generator(features)
    all_anchors = Boxes.cat(anchors).tensor
    generator = torch.Generator().manual_seed(num_gt)
    gts = []
    for _ in range(2):
        instances = Instances((256, 320))
        instances.gt_boxes = Boxes(random_boxes(num_gt, 256, generator) * 1.2)
        instances.gt_classes = torch.zeros(num_gt, dtype=torch.long)
        gts.append(instances)
    num_points = len(all_anchors)
    result = build_matcher(small_cfg())(
        MatchInputs(
            points=Boxes(all_anchors).get_centers(),
            strides=all_anchors[:, 2] - all_anchors[:, 0],
            num_points_per_level=[len(a) for a in anchors],
            gt_boxes=[g.gt_boxes.tensor for g in gts],
            gt_classes=[g.gt_classes for g in gts],
            pred_logits=torch.zeros(2, num_points, NUM_CLASSES),
            pred_boxes=torch.zeros(2, num_points, 4),
        )
    )
    expected = _detectron2_fcos_gt_index(theirs, anchors, gts)
    assert (expected >= 0).sum() > 0
    assert torch.equal(result.gt_index, expected)
