"""Building blocks shared by the assignment methods, in pipeline order:

- ``geometry.py``: box/point geometry (areas, inside tests, paired IoU, anchor boxes).
- ``pairs.py``: the (GT, point) pairs of per-GT windows found by binary search, and GT
  chunks, so that no stage needs a dense (G, R) matrix (memory bounded whatever G).
- ``priors.py``: candidate priors (size ranges, centre regions, top-k per level,
  the preliminary IoU match, DW's Gaussian centre prior).
- ``scores.py``: per-candidate scores from the predictions (anchor losses, deviation).
- ``candidates.py``: per-GT candidate sets with their scores, for batched divisions.
- ``gmm.py``: the batched 1-D Gaussian mixture behind PAA-style divisions.
- ``divisions.py``: positive/negative divisions (mean + std, lowest-n, dynamic loss
  threshold) and the scatter of positives back to points.
- ``soft.py``: reductions over (point, GT) pairs for soft assignments (per-GT
  normalisation and min-max, per (point, class) minimum, each point's best GT).
"""
