"""COCO 2017 loaders of the R-50 1x configs (short side 800, long side at most 1333,
horizontal flips), read through the project's mapper (image-read errors name the file),
with the project's evaluator (COCO box AP plus the AP per aspect-ratio band) and the
policies of the data checks (``lada.data.box_checks``; the yaml keys ``DATASETS.*``), which
``tools/lazyconfig_train_net.py`` puts on every dataset it loads."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts,
)
from omegaconf import OmegaConf

from lada.compat import HAS_COMPILED_OPS
from lada.data import ReadCheckedDatasetMapper
from lada.evaluation import SlenderCOCOEvaluator

dataloader = OmegaConf.create()

# COCO-format datasets to register, [name, json file, image folder] each (the yaml key
# DATASETS.REGISTER_COCO); COCO 2017 is registered by detectron2 itself.
dataloader.register_coco = []

dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names=["coco_2017_train"], filter_empty=True),
    mapper=L(ReadCheckedDatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=[800], max_size=1333, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True, vertical=False),
        ],
        image_format="BGR",
        dataset_names="${..dataset.names}",
        skip_unreadable=False,  # True: skip an unreadable training image with a warning
    ),
    total_batch_size=16,
    num_workers=4,
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names=["coco_2017_val"], filter_empty=False),
    mapper=L(ReadCheckedDatasetMapper)(
        is_train=False,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333, sample_style="choice")
        ],
        image_format="${...train.mapper.image_format}",
        dataset_names="${..dataset.names}",
    ),
    num_workers=4,
)

# dataset_name is filled in per test dataset by the training tool; output_dir defaults
# to <train.output_dir>/inference/<dataset>
dataloader.evaluator = L(SlenderCOCOEvaluator)(
    dataset_name=None,
    tasks=("bbox",),
    output_dir=None,
    use_fast_impl=HAS_COMPILED_OPS,  # the compiled COCO eval only where it exists
    aspect_ratio_edges=[3.0],
)

# What the data checks do with bad boxes ("error" or "drop_with_warning"), and whether a
# training dataset may hold no annotated image.
dataloader.checks = dict(
    box_policy=dict(
        non_finite="error",
        negative_size="error",
        zero_size="drop_with_warning",
        out_of_image="drop_with_warning",
    ),
    allow_unannotated=False,
)
