"""The tiling of datasets/fetch_trees.py on hand-made boxes (no download here)."""
import importlib.util

import numpy as np
from conftest import REPO

_spec = importlib.util.spec_from_file_location("fetch_trees", REPO / "datasets/fetch_trees.py")
fetch_trees = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fetch_trees)


def test_tile_edges_cover_the_image_without_overlap():
    np.testing.assert_array_equal(fetch_trees.tile_edges(2299, 6), [0, 383, 766, 1150, 1533, 1916, 2299])
    np.testing.assert_array_equal(fetch_trees.tile_edges(1035, 3), [0, 345, 690, 1035])


def test_boxes_cut_by_the_tile_are_kept_when_half_inside():
    boxes = np.array([
        [10, 10, 30, 40],    # inside the tile [0, 100) x [0, 100)
        [90, 20, 110, 40],   # half inside (x 90..100 of 90..110): kept, clipped
        [95, 20, 115, 40],   # a quarter inside: dropped
        [150, 150, 170, 170],  # outside
    ], dtype=float)
    np.testing.assert_array_equal(
        fetch_trees.tile_boxes(boxes, 0, 0, 100, 100), [[10, 10, 30, 40], [90, 20, 100, 40]])
    # the tile [100, 200) x [0, 100): the second box is half inside there too, the third
    # three quarters; coordinates relative to the tile's origin
    np.testing.assert_array_equal(
        fetch_trees.tile_boxes(boxes, 100, 0, 200, 100), [[0, 20, 10, 40], [0, 20, 15, 40]])


def test_voc_boxes():
    xml = (b"<annotation><object><name>Tree</name><bndbox><xmin>1</xmin><ymin>2</ymin>"
           b"<xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>")
    np.testing.assert_array_equal(fetch_trees.read_voc_boxes(xml), [[1, 2, 30, 40]])
