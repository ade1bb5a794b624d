"""Dense targets from a MatchResult, by hand."""
import torch

from lada.matchers import MatchResult
from lada.modeling.losses.targets import centerness_targets, gather_targets, iou_targets


def test_gather_targets_across_images_and_an_empty_one():
    boxes = [torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), torch.zeros(0, 4),
             torch.tensor([[1.0, 2, 3, 4]])]
    classes = [torch.tensor([2, 0]), torch.zeros(0, dtype=torch.long), torch.tensor([1])]
    gt_index = torch.tensor([[1, -1, 0], [-1, -1, -1], [-1, 0, 0]])
    targets = gather_targets(MatchResult(gt_index), boxes, classes, num_classes=3)
    assert targets.labels.tolist() == [[0, 3, 2], [3, 3, 3], [3, 1, 1]]
    assert targets.boxes[0, 0].tolist() == [5, 5, 20, 20]
    assert targets.boxes[2, 2].tolist() == [1, 2, 3, 4]
    assert targets.foreground.sum() == 4


def test_centerness_and_iou_targets():
    # l, t, r, b = 2, 1, 6, 3 -> sqrt(2/6 * 1/3) = 1/3; the box centre -> 1.
    points = torch.tensor([[2.0, 1.0], [4.0, 2.0]])
    boxes = torch.tensor([[0.0, 0, 8, 4], [0, 0, 8, 4]])
    torch.testing.assert_close(centerness_targets(points, boxes), torch.tensor([1 / 3, 1.0]))
    predicted = torch.tensor([[0.0, 0, 4, 4], [0, 0, 8, 4]], requires_grad=True)
    iou = iou_targets(predicted, boxes)
    torch.testing.assert_close(iou, torch.tensor([0.5, 1.0]))
    assert not iou.requires_grad
