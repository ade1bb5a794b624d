"""Building blocks shared by the assignment methods (docs/methods/README.md, "The shared
stages"), in pipeline order:

- ``geometry.py``: the inside test and anchor boxes, with the box geometry the losses
  share (centres, areas, side distances, paired IoU, the clamp of inverted predicted
  boxes), which lives in ``lada/geometry.py``.
- ``pairs.py``: the (GT, point) pairs of per-GT windows found by binary search, and GT
  chunks, so that no stage needs a dense (G, R) matrix (memory bounded whatever G).
- ``batch.py``: the batch's GT boxes as one set (``BatchGTs``), the flat point keys
  ``i * R + point`` and the conversion back to per-image GT indices.
- ``priors.py``: spatial priors of (point, GT) pairs: the centre region in its three
  shapes (square; ``ASPECT_EQUAL_AREA``, fcos's epcp; ``ASPECT_STRETCHED``, LADA's
  EPCP), FCOS's size ranges, DW's Gaussian centre prior.
- ``preliminary.py``: PAA's and LADA's preliminary IoU match of the whole batch and the
  anchor losses of the matched points.
- ``scores.py``: scores of (point, GT) pairs from the predictions (anchor losses, LADA's
  deviation loss), lower is better.
- ``nearest.py``: the k nearest points of a centre per level, searched in windows
  around it (ATSS's candidates).
- ``candidates.py``: candidate building, per GT and level (G, K): ATSS's closest
  points, the lowest-k by score.
- ``gmm.py``: the batched two-component 1-D Gaussian mixture, PAA's separation and
  MMMC's higher-component division.
- ``divisions.py``: which candidates become positive (ATSS's mean + std, LADA's dynamic
  loss threshold, lowest-n).
- ``best_gt.py``: each point's best GT when several claim it, two reducers named by
  their tie rule (lowest index; smallest box).
- ``soft.py``: reductions over (point, GT) pairs for soft assignments (per-GT
  normalisation and min-max, per (point, class) minimum).
- ``overlaps.py``: the pairs whose predicted box overlaps the GT (u > 0), exactly and
  sparse, whatever the predicted boxes (tal, dsl, simota).
- ``ranking.py``: per group (GT) the k lowest-score pairs, ties to the lower point (tal,
  dsl, simota, dynamic k).
- ``dynamic_k.py``: dynamic k from the q largest IoUs of each GT's pairs (dsl, ota,
  simota).
- ``class_costs.py``: per-class costs summed over the classes for (point, GT) pairs
  without a (pairs, C) tensor (dsl, ota, simota).
- ``coverage.py``: the points inside some GT of their image, from column intervals (dsl).
- ``transport.py``: log-domain Sinkhorn over a sparse cost (ota).
"""
