"""Building blocks shared by the assignment methods (docs/methods/README.md, "The shared
stages"), in pipeline order:

- ``geometry.py``: the inside test and anchor boxes, with the box geometry the losses
  share (centres, areas, side distances, paired IoU, the clamp of inverted predicted
  boxes), which lives in ``lada/geometry.py``.
- ``pairs.py``: the (GT, point) pairs of per-GT windows found by binary search, and GT
  chunks, so that no stage needs a dense (G, R) matrix (memory bounded whatever G).
- ``batch.py``: the batch's GT boxes as one set (``BatchGTs``), the flat point keys
  ``i * R + point`` and the conversion back to per-image GT indices.
- ``priors.py``: candidate priors (FCOS centre sampling and size ranges, LADA's centre
  region, the closest points per level, the preliminary IoU match, the lowest-k per GT
  and level, DW's Gaussian centre prior).
- ``scores.py``: scores of (point, GT) pairs from the predictions (anchor losses, LADA's
  deviation loss), lower is better.
- ``candidates.py``: the preliminary match and anchor losses of the whole batch, then
  per-GT, per-level candidate sets with their scores, for batched divisions.
- ``gmm.py``: the batched two-component 1-D Gaussian mixture, PAA's separation and
  MMMC's higher-component division.
- ``divisions.py``: which candidates become positive (mean + std, lowest-n, dynamic loss
  threshold) and the resolution of points claimed by several GT boxes (``BestGT``).
- ``soft.py``: reductions over (point, GT) pairs for soft assignments (per-GT
  normalisation and min-max, per (point, class) minimum, each point's best GT).
"""
