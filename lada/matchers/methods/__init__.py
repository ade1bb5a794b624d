"""The assignment methods, one module each, registered in ``MATCHER_REGISTRY`` under the
name ``MODEL.MATCHER.NAME`` selects:

- ``fcos``: detectron2's FCOS centre sampling and size ranges (baseline).
- ``atss``: adaptive training sample selection, IoU mean + std (baseline).
- ``paa``: probabilistic anchor assignment, GMM on anchor scores (baseline).
- ``lada``: LADA, EPCP + combined loss of anchor + dynamic loss threshold.
- ``ciou_atss``: dynamic combined-IoU ATSS.
- ``aps``: MMMC's aligned points sampler.
- ``dw``: Dual Weighting, soft pairwise positive and negative weights.
- ``tal``: TOOD's task-aligned assignment, with a quality target.
- ``dsl``: RTMDet's dynamic soft-label assignment, with a quality target.
- ``ota``: Optimal Transport Assignment, Sinkhorn over the centre prior's costs.
- ``simota``: YOLOX's simplified OTA, the k cheapest points of each GT's region.
"""
from . import aps, atss, ciou_atss, dw, fcos, lada, ota, paa, simota  # noqa: F401  (registration)
from . import dsl, tal  # noqa: F401  (registration)
