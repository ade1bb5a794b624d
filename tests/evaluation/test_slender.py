"""Slender-object AP on a hand-built dataset whose AP per aspect-ratio band is known by
construction. Every expected value is derived by hand in the comments from COCO's
definition (101 recall thresholds, IoU thresholds 0.50:0.05:0.95, precision made
monotone from the right, AP = mean over thresholds and classes).

The scene (100 x 100 images, category 1 "a", 2 "b"; boxes [x, y, w, h], ratio = long /
short side, area = w h):

    image 1: A  "a"  [10, 10, 20, 20]  ratio 1  area 400  (small)
             B  "a"  [50, 10, 40, 10]  ratio 4  area 400  (small)
    image 2: C  "a"  [10, 50, 40, 40]  ratio 1  area 1600 (medium)
             D  "b"  [60, 50,  8, 32]  ratio 4  area 256  (small)

Bands (default edges [3]): "ar<3" holds A and C, "ar>=3" holds B and D.
"""
import json
import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances
from pycocotools.coco import COCO

from lada.evaluation import (
    AspectRatioBand,
    SlenderCOCOEvaluator,
    aspect_ratio,
    aspect_ratio_bands,
    evaluate_aspect_ratio_bands,
)

GT = [  # (image id, category id, bbox)
    (1, 1, [10, 10, 20, 20]),  # A
    (1, 1, [50, 10, 40, 10]),  # B
    (2, 1, [10, 50, 40, 40]),  # C
    (2, 2, [60, 50, 8, 32]),  # D
]
A, B, C, D = (g[2] for g in GT)
NAN = float("nan")


def coco_dict():
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": n + 1, "image_id": image, "category_id": category, "bbox": box,
             "area": box[2] * box[3], "iscrowd": 0}
            for n, (image, category, box) in enumerate(GT)
        ],
    }


def coco_gt():
    coco = COCO()
    coco.dataset = coco_dict()
    coco.createIndex()
    return coco


def band_results(detections, **kwargs):
    """detections: (image id, category id, bbox, score)."""
    gt = coco_gt()
    dt = gt.loadRes([
        {"image_id": i, "category_id": c, "bbox": list(map(float, b)), "score": s}
        for i, c, b, s in detections
    ])
    return evaluate_aspect_ratio_bands(gt, dt, aspect_ratio_bands([3.0]), class_names=["a", "b"], **kwargs)


def assert_metrics(results, expected):
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(results[key]), (key, results[key])
        else:
            assert results[key] == pytest.approx(value, abs=1e-9), (key, results[key])


def test_perfect_detections_of_the_square_band_only():
    # ar<3: A and C found exactly (every IoU threshold, no false positive) -> 100; B and D
    # are ignored, not missed. APs: A (small) 100; APm: C (medium) 100; no large GT: NaN.
    # ar>=3: the detections of A and C match ignored GTs and are ignored; B and D are
    # missed -> 0 for both classes. Per class: "b" has no GT in ar<3 -> NaN.
    results = band_results([(1, 1, A, 0.9), (2, 1, C, 0.8)])
    assert_metrics(results, {
        "AP@ar<3": 100, "AP50@ar<3": 100, "AP75@ar<3": 100,
        "APs@ar<3": 100, "APm@ar<3": 100, "APl@ar<3": NAN,
        "AP-a@ar<3": 100, "AP-b@ar<3": NAN,
        "AP@ar>=3": 0, "AP50@ar>=3": 0, "AP75@ar>=3": 0,
        "APs@ar>=3": 0, "APm@ar>=3": NAN, "APl@ar>=3": NAN,
        "AP-a@ar>=3": 0, "AP-b@ar>=3": 0,
    })


def test_perfect_detections_of_the_slender_band_only():
    # The mirror image: B ("a") and D ("b") found exactly, A and C missed. ar>=3: 100 for
    # both classes; B and D are small -> APs 100, APm NaN. ar<3: A and C missed -> 0.
    results = band_results([(1, 1, B, 0.9), (2, 2, D, 0.8)])
    assert_metrics(results, {
        "AP@ar>=3": 100, "AP50@ar>=3": 100, "APs@ar>=3": 100, "APm@ar>=3": NAN,
        "AP-a@ar>=3": 100, "AP-b@ar>=3": 100,
        "AP@ar<3": 0, "APs@ar<3": 0, "APm@ar<3": 0, "AP-a@ar<3": 0, "AP-b@ar<3": NAN,
    })


def test_detection_of_another_band_counts_only_where_it_matches():
    # A and C found exactly, plus X = [50, 10, 25, 10] ("a", score 0.95, ratio 2.5): it
    # covers the left 25 px of B, IoU(X, B) = 250 / 400 = 0.625, so X matches B at the
    # IoU thresholds 0.50, 0.55, 0.60 (3 of 10) and nothing at the 7 others.
    x = [50, 10, 25, 10]
    results = band_results([(1, 1, x, 0.95), (1, 1, A, 0.9), (2, 1, C, 0.8)])
    # ar<3, class "a" (class "b" has no GT in the band):
    #   3 thresholds: X matched to B, which is ignored -> X ignored; A, C true -> AP 1;
    #   7 thresholds: X unmatched with its ratio inside the band -> a false positive
    #   ranked first: precision 0, 1/2, 2/3 at recall 0, 1/2, 1; made monotone from the
    #   right it is 2/3 at every recall threshold -> AP 2/3.
    #   AP = (3 x 1 + 7 x 2/3) / 10 = 23/30. (Were B deleted instead of ignored, X would be
    #   a false positive at every threshold: 2/3.) AP50: 1. AP75: 2/3.
    # ar>=3: class "a": X matches B (in the band) at 3 thresholds -> a true positive,
    #   whatever its own ratio -> AP 1; at the other 7 X is unmatched and its ratio lies
    #   outside the band -> ignored; B missed -> AP 0: 3/10. Class "b": D missed -> 0.
    #   AP = (0.3 + 0) / 2 = 0.15; AP50 = (1 + 0) / 2; AP75 = 0.
    assert_metrics(results, {
        "AP@ar<3": 100 * 23 / 30, "AP50@ar<3": 100, "AP75@ar<3": 100 * 2 / 3,
        "AP-a@ar<3": 100 * 23 / 30,
        "AP@ar>=3": 15, "AP50@ar>=3": 50, "AP75@ar>=3": 0,
        "AP-a@ar>=3": 30, "AP-b@ar>=3": 0,
    })


def test_unmatched_detection_is_a_false_positive_in_its_own_band_only():
    # A and C found exactly, plus Y = [5, 80, 50, 10] ("a", score 0.99, ratio 5) far from
    # every GT. ar<3: Y's ratio is outside the band -> ignored -> 100. ar>=3: Y is a false
    # positive, B and D missed -> 0.
    results = band_results([(2, 1, [5, 80, 50, 10], 0.99), (1, 1, A, 0.9), (2, 1, C, 0.8)])
    assert_metrics(results, {"AP@ar<3": 100, "AP-a@ar<3": 100, "AP@ar>=3": 0})


def test_max_dets_limits_the_detections_per_image():
    # With at most 1 detection per image (and category), image 1 keeps only its best:
    # X' ("a", score 0.95, [60, 70, 20, 20], ratio 1) on no object, so A's detection is
    # dropped. ar<3: X' (false) then C (true): precision 0, 1/2 at recall 0, 1/2, made
    # monotone 1/2 up to recall 1/2 (recall thresholds 0.00 ... 0.50: 51 of 101) and 0
    # above, at every IoU threshold: AP = 51/101 x 1/2.
    detections = [(1, 1, [60, 70, 20, 20], 0.95), (1, 1, A, 0.9), (2, 1, C, 0.8)]
    results = band_results(detections, max_dets=(1, 1, 1))
    assert results["AP@ar<3"] == pytest.approx(100 * 51 / 101 / 2)


def test_bands_labels_and_membership():
    low, high = aspect_ratio_bands([3.0])
    assert (low, high) == (AspectRatioBand(1.0, 3.0), AspectRatioBand(3.0, math.inf))
    assert (low.label, high.label) == ("ar<3", "ar>=3")
    assert aspect_ratio([0, 0, 30, 10]) == 3.0
    assert not low.contains(3.0) and high.contains(3.0)  # [1, 3) and [3, inf)
    assert high.contains(aspect_ratio([0, 0, 5, 0])) and aspect_ratio([0, 0, 5, 0]) == math.inf
    middle = aspect_ratio_bands([2, 4.5])[1]
    assert middle.label == "2<=ar<4.5" and middle.contains(2.0) and not middle.contains(4.5)
    assert aspect_ratio_bands([]) == []


@pytest.mark.parametrize("edges", [[1.0], [0.5, 3], [3, 2], [3, 3], [float("inf")]])
def test_bad_edges_are_refused_naming_the_key(edges):
    with pytest.raises(ValueError, match="TEST.ASPECT_RATIO_EDGES"):
        aspect_ratio_bands(edges)


def test_band_ignore_flags_stay_off_the_shared_gt():
    # pycocotools writes each GT's crowd flag as "ignore" into the shared annotations; the
    # band evaluation must not leave its own flags there (each band would mark half of
    # these GTs), since the usual evaluation and later ones share these dicts.
    gt = coco_gt()
    dt = gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": [10.0, 10.0, 20.0, 20.0], "score": 1.0}])
    evaluate_aspect_ratio_bands(gt, dt, aspect_ratio_bands([3.0]))
    assert [bool(a.get("ignore", 0)) for a in gt.anns.values()] == [False] * 4


def _instances(boxes_xywh, classes, scores):
    instances = Instances((100, 100))
    xywh = torch.tensor(boxes_xywh, dtype=torch.float32)
    instances.pred_boxes = Boxes(torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1))
    instances.pred_classes = torch.tensor(classes)
    instances.scores = torch.tensor(scores)
    return instances


def test_evaluator_reports_the_bands_beside_the_usual_table(tmp_path):
    json_file = tmp_path / "gt.json"
    json_file.write_text(json.dumps(coco_dict()))
    name = "slender_hand_built"
    from lada.data import register_coco_dataset

    register_coco_dataset(name, json_file, tmp_path)
    DatasetCatalog.get(name)  # loading sets the category id map, as the trainer does
    evaluator = SlenderCOCOEvaluator(name, tasks=("bbox",), distributed=False, use_fast_impl=False)
    evaluator.reset()
    # contiguous class 0 = category 1 "a"
    evaluator.process([{"image_id": 1}], [{"instances": _instances([A], [0], [0.9])}])
    evaluator.process([{"image_id": 2}], [{"instances": _instances([C], [0], [0.8])}])
    results = evaluator.evaluate()["bbox"]
    # The usual table: class "a" finds 2 of its 3 GTs at precision 1 -> recall thresholds
    # 0.00 ... 0.66 (67 of 101) at precision 1 -> AP 67/101; class "b" 0; mean of both.
    assert results["AP"] == pytest.approx(100 * 67 / 101 / 2)
    assert results["AP@ar<3"] == pytest.approx(100)
    assert results["AP@ar>=3"] == pytest.approx(0)
    assert np.isnan(results["AP-b@ar<3"])

    plain = SlenderCOCOEvaluator(name, tasks=("bbox",), distributed=False,
                                 use_fast_impl=False, aspect_ratio_edges=[])
    plain.reset()
    plain.process([{"image_id": 1}], [{"instances": _instances([A], [0], [0.9])}])
    assert not any("@" in key for key in plain.evaluate()["bbox"])


def test_trainer_builds_the_slender_evaluator(tmp_path):
    from conftest import small_cfg

    from lada.engine import Trainer

    json_file = tmp_path / "gt.json"
    json_file.write_text(json.dumps(coco_dict()))
    from lada.data import register_coco_dataset

    register_coco_dataset("slender_trainer", json_file, tmp_path)
    cfg = small_cfg(**{"TEST.ASPECT_RATIO_EDGES": "[2.0, 5.0]"})
    evaluator = Trainer.build_evaluator(cfg, "slender_trainer", output_folder=str(tmp_path))
    assert isinstance(evaluator, SlenderCOCOEvaluator)
    assert [b.label for b in evaluator._bands] == ["ar<2", "2<=ar<5", "ar>=5"]


def test_a_band_without_gt_is_left_out_of_the_logged_tables(tmp_path, caplog):
    """Edges [3, 10]: no GT box has a ratio of 10 or more, so "ar>=10" is all NaN: its row
    and column are left out of the log (named once), its metrics stay in the results."""
    json_file = tmp_path / "gt.json"
    json_file.write_text(json.dumps(coco_dict()))
    from lada.data import register_coco_dataset

    register_coco_dataset("slender_empty_band", json_file, tmp_path)
    DatasetCatalog.get("slender_empty_band")
    evaluator = SlenderCOCOEvaluator("slender_empty_band", tasks=("bbox",), distributed=False,
                                     use_fast_impl=False, aspect_ratio_edges=[3.0, 10.0])
    evaluator.reset()
    evaluator.process([{"image_id": 1}], [{"instances": _instances([A], [0], [0.9])}])
    with caplog.at_level("INFO", logger="lada.evaluation.evaluator"):
        results = evaluator.evaluate()["bbox"]
    assert math.isnan(results["AP@ar>=10"]) and results["AP@ar<3"] > 0
    bands, per_category = [r.getMessage() for r in caplog.records
                           if r.name == "lada.evaluation.evaluator"]
    assert "| ar<3 " in bands and "| 3<=ar<10 " in bands and "ar>=10 " not in bands
    assert bands.endswith("(no GT box in ar>=10: left out)")
    assert "3<=ar<10" in per_category and "ar>=10" not in per_category
