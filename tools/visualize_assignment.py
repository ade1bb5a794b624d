#!/usr/bin/env python
"""Which points each matcher makes positive, on one image: one PNG, a panel per matcher
(as LADA's Figs. 4 and 11).

Each panel shows the image with its GT boxes and every positive point coloured by FPN
level; the centre region that limits ``lada``'s candidates (EPCP, or CP's square) is
drawn dashed around each GT, at each level where the GT has positives. All matchers see
the same ``MatchInputs``: the model of ``--config-file`` with ``--weights`` (without
weights, its initialisation: the matchers that read predictions then assign from
untrained ones) on the image as the training mapper makes it, at the test size (no
random resizing or flips). The config is built as ``train_net.py`` builds it
(:func:`lada.engine.build_cfg`), so a config with the own-data recipe (``RECIPE.ENABLED``,
e.g. ``configs/quick/own_data.yaml``; ``--dataset`` the training datasets too) gets the
sizes, class count and anchors of its training, and a run's saved ``OUTPUT_DIR/config.yaml``
(``RECIPE.APPLIED``) the sizes it was trained with, without reading the training data.
Weights named on the command line (``--weights``, ``MODEL.WEIGHTS``) must give every
weight of that model: a checkpoint of another class count or architecture stops the tool
with one line saying so (a config's own ``MODEL.WEIGHTS``, an initialisation, loads as in
training).

    python tools/visualize_assignment.py --config-file configs/quick/lada.yaml \\
        --weights output/quick/lada/model_final.pth --index 3 --output assignment.png

``--name`` picks any registered dataset (the config's ``DATASETS.REGISTER_COCO``,
``--dataset NAME JSON IMAGE_ROOT`` or detectron2's builtin COCO); the default is the
config's first test dataset (the embedded synthetic data for ``configs/quick/``). The
flags are those of ``tools/browse_dataset.py`` (and ``--dataset`` that of
``train_net.py`` and ``tools/predict.py``); the former spellings ``--register NAME JSON
IMAGE_ROOT`` and ``--dataset NAME`` still work, with a warning.
Soft matchers (``MatchResult.soft`` set, ``dw``): each point's marker area is
proportional to the weight of its highest-weighted pair, the pair with the GT it is
drawn for.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

import lada  # noqa: F401  (registers the matchers and the meta-architecture)
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from lada.data import register_coco_datasets
from lada.engine import CheckpointError, LadaCheckpointer, add_dataset_argument, build_cfg
from lada.matchers import MATCHER_REGISTRY, MatchInputs, MatchResult, build_matcher
from lada.matchers.methods.lada import LADAMatcher
from lada.matchers.stages.pairs import level_maxima
from lada.matchers.stages.priors import center_region_reach

LEVEL_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")


def setup(args: argparse.Namespace) -> CfgNode:
    """The frozen config as ``train_net.py`` builds it (:func:`lada.engine.build_cfg`),
    ``--dataset`` entries added to ``DATASETS.REGISTER_COCO`` and ``--weights`` last of
    the overrides: with ``RECIPE.ENABLED`` the own-data recipe reads the training datasets
    and sets the same sizes, class count and anchors as in training (the keys you set are
    kept); a run's saved ``config.yaml`` (``RECIPE.APPLIED``) is used as it is."""
    weights = [] if args.weights is None else ["MODEL.WEIGHTS", args.weights]
    cfg, recipe = build_cfg(args.config_file, [*args.opts, *weights], args.dataset)
    if recipe is not None:
        for line in recipe.lines:
            print(line)
    return cfg


def load_example(cfg: CfgNode, dataset: str, index: int) -> dict:
    """Image ``index`` of ``dataset`` as the training mapper makes it, with its GT
    instances, resized to the test size (``INPUT.MIN_SIZE_TEST``), without flips."""
    if dataset not in DatasetCatalog.list():
        raise SystemExit(f"dataset '{dataset}' is not registered; registered: "
                         f"{', '.join(sorted(DatasetCatalog.list()))}")
    try:
        dicts = DatasetCatalog.get(dataset)
    except FileNotFoundError as error:
        raise SystemExit(f"dataset '{dataset}': {error} (the embedded data is made by "
                         "`python datasets/make_synthetic.py`)") from error
    if not 0 <= index < len(dicts):
        raise SystemExit(f"--index {index}: dataset '{dataset}' has {len(dicts)} images")
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    mapper = DatasetMapper(cfg, is_train=True, augmentations=[resize])
    example = mapper(dicts[index])
    if len(example["instances"]) == 0:
        raise SystemExit(f"image {index} of '{dataset}' ({dicts[index]['file_name']}) has no "
                         "GT boxes; choose another --index")
    return example


def load_weights(model: torch.nn.Module, cfg: CfgNode, trained: bool) -> None:
    """``MODEL.WEIGHTS`` into ``model``. ``trained`` (weights named on the command line,
    ``--weights`` or ``MODEL.WEIGHTS``): the matchers assign from the trained model's
    predictions, so a checkpoint that does not give every weight (another
    ``MODEL.FCOS.NUM_CLASSES``, another architecture) or cannot be read stops the tool
    with one line; otherwise the config's own ``MODEL.WEIGHTS`` are its initialisation
    (an ImageNet backbone), loaded as training loads them (what does not fit keeps its
    initialisation)."""
    try:
        LadaCheckpointer(model, trust_pickle=cfg.MODEL.WEIGHTS_TRUST_PICKLE,
                         for_inference=trained).load(cfg.MODEL.WEIGHTS)
    except CheckpointError as error:
        raise SystemExit(str(error)) from None


def assign(cfg: CfgNode, inputs: MatchInputs, names: List[str]) -> Dict[str, tuple]:
    """{name: (matcher, MatchResult)} of every named matcher (its config keys from
    ``cfg``) on the same inputs."""
    results = {}
    for name in names:
        matcher_cfg = cfg.clone()
        matcher_cfg.defrost()
        matcher_cfg.MODEL.MATCHER.NAME = name
        matcher = build_matcher(matcher_cfg)
        results[name] = (matcher, matcher(inputs))
    return results


def point_weights(result: MatchResult, num_points: int) -> Optional[np.ndarray]:
    """(R,) weight of each point of the first image for soft matchers: its largest pair
    weight (0 for a point in no pair); None for hard matchers."""
    if not result.is_soft:
        return None
    image, point, _ = result.soft.pair_index.unbind(dim=1)
    first = image == 0
    weights = torch.zeros(num_points, dtype=torch.float32, device=point.device)
    weights.scatter_reduce_(0, point[first], result.soft.pair_weight[first].float(), "amax")
    return weights.cpu().numpy()


def marker_sizes(positive: np.ndarray, weights: Optional[np.ndarray], base: float) -> np.ndarray:
    """Marker areas of the positive points: ``base`` each, or proportional to the
    weights (the largest weight gets 2 ``base``)."""
    if weights is None:
        return np.full(int(positive.sum()), base)
    chosen = np.clip(weights[positive], 0, None)
    return 2 * base * chosen / max(float(chosen.max(initial=0.0)), 1e-12)


def draw_panel(axis, image: np.ndarray, inputs: MatchInputs, name: str, matcher,
               result: MatchResult) -> None:
    """One matcher's panel: GT boxes, positives by level, ``lada``'s centre regions."""
    from matplotlib.patches import Rectangle

    axis.imshow(image)
    boxes = inputs.gt_boxes[0].cpu()
    for box in boxes.tolist():
        axis.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False,
                                 edgecolor="white", linewidth=1.2))
    gt_index = result.gt_index[0].cpu()
    positive = (gt_index >= 0).numpy()
    level = np.repeat(np.arange(len(inputs.num_points_per_level)), inputs.num_points_per_level)
    points = inputs.points.cpu().numpy()
    strides = level_maxima(inputs.strides.cpu(), inputs.num_points_per_level)
    base = max(6.0, 2000.0 / max(image.shape[:2]))
    sizes = marker_sizes(positive, point_weights(result, len(points)), base)
    colours = [LEVEL_COLOURS[i % len(LEVEL_COLOURS)] for i in level[positive]]
    axis.scatter(points[positive, 0], points[positive, 1], s=sizes, c=colours,
                 edgecolors="black", linewidths=0.4, zorder=3)
    if isinstance(matcher, LADAMatcher) and matcher.center_region_shape is not None:
        _draw_center_regions(axis, boxes, gt_index, level, strides, matcher, image.shape[:2])
    axis.set_xlim(-0.5, image.shape[1] - 0.5)
    axis.set_ylim(image.shape[0] - 0.5, -0.5)
    per_gt = np.bincount(gt_index[gt_index >= 0].numpy(), minlength=len(boxes))
    axis.set_title(f"{name}: {int(positive.sum())} positives, {per_gt.mean():.1f} per GT, "
                   f"{int((per_gt == 0).sum())} GT without", fontsize=9)
    axis.set_axis_off()


def _draw_center_regions(axis, boxes, gt_index, level, strides, matcher, image_size) -> None:
    """LADA's centre region (Eq. 1-2) of each GT at each level holding its positives,
    clipped to the image (``image_size`` (H, W))."""
    from matplotlib.patches import Rectangle

    height, width = image_size
    for gt in range(len(boxes)):
        for lvl in np.unique(level[(gt_index == gt).numpy()]):
            reach = center_region_reach(strides[lvl : lvl + 1], boxes[gt : gt + 1],
                                        matcher.center_radius, matcher.center_region_shape)[0]
            center = (boxes[gt, :2] + boxes[gt, 2:]) / 2
            x0, y0 = (center - reach).clamp(min=-0.5).tolist()
            x1, y1 = torch.minimum(center + reach, torch.tensor([width - 0.5, height - 0.5])).tolist()
            axis.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linestyle="--",
                                     linewidth=0.9, edgecolor=LEVEL_COLOURS[lvl % 7]))


def render(path: Path, example: dict, inputs: MatchInputs, results: Dict[str, tuple],
           input_format: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    image = example["image"].permute(1, 2, 0).numpy().astype(np.uint8)
    if input_format == "BGR":
        image = image[:, :, ::-1]
    columns = min(3, len(results))
    rows = (len(results) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.4 * rows + 0.6),
                                squeeze=False, layout="constrained")
    for axis, (name, (matcher, result)) in zip(axes.flat, results.items()):
        draw_panel(axis, image, inputs, name, matcher, result)
    for axis in list(axes.flat)[len(results):]:
        axis.set_axis_off()
    strides = level_maxima(inputs.strides.cpu(), inputs.num_points_per_level).tolist()
    handles = [Line2D([], [], marker="o", linestyle="", color=LEVEL_COLOURS[i % 7],
                      label=f"P{i + 3} (stride {s:g})") for i, s in enumerate(strides)]
    handles.append(Line2D([], [], color="black", linestyle="--", label="lada centre region"))
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8)
    figure.suptitle(title, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_small_png(figure, path)
    plt.close(figure)


def save_small_png(figure, path: Path, dpi: int = 72,
                   keep: tuple = LEVEL_COLOURS + ("#ffffff", "#000000")) -> None:
    """Saves a matplotlib figure as a 256-colour PNG, a few times smaller than full
    colour (to commit): an adaptive palette plus the exact colours ``keep`` (the level
    colours), to which their pixels map without dithering."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    rgb = Image.open(buffer).convert("RGB")
    palette = rgb.quantize(256 - len(keep)).getpalette()[: 3 * (256 - len(keep))]
    for colour in keep:
        palette += [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    target = Image.new("P", (1, 1))
    target.putpalette(palette)
    rgb.quantize(palette=target, dither=Image.Dither.NONE).save(path, optimize=True)


# A config key of the KEY VALUE overrides (``INPUT.MIN_SIZE_TEST``), not a json file.
_CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+")


class _Parser(argparse.ArgumentParser):
    """The tool's parser, taking the former ``--dataset NAME`` (one value: the dataset to
    draw) as ``--name NAME``, with a warning: ``--dataset`` now registers a dataset, with
    three values, as in the other tools."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._former_dataset_choice(args), namespace)

    def _former_dataset_choice(self, args: List[str]) -> List[str]:
        """``args`` with each ``--dataset NAME`` that is not followed by a JSON file (by
        an option, a ``KEY VALUE`` override or nothing) spelt ``--name NAME``."""
        args = list(args)
        for index, arg in enumerate(args):
            if arg == "--":
                break
            if arg.startswith("--dataset="):
                args[index] = "--name=" + arg[len("--dataset="):]
            elif arg == "--dataset":
                following = args[index + 1 : index + 3]
                if len(following) == 2 and not following[1].startswith("-") \
                        and not _CONFIG_KEY.fullmatch(following[1]):
                    continue  # NAME JSON IMAGE_ROOT (argparse checks the count)
                args[index] = "--name"
            else:
                continue
            _deprecated(self, "--dataset NAME is now --name NAME (--dataset NAME JSON "
                              "IMAGE_ROOT registers a dataset, as in the other tools)")
        return args


class _FormerRegister(argparse.Action):
    """``--register NAME JSON IMAGE_ROOT``, the former spelling of ``--dataset``: the
    same registration, with a warning."""

    def __call__(self, parser, namespace, values, option_string=None):
        _deprecated(parser, "--register NAME JSON IMAGE_ROOT is now --dataset NAME JSON "
                            "IMAGE_ROOT, as in the other tools")
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest) or []), list(values)])


def _deprecated(parser: argparse.ArgumentParser, message: str) -> None:
    print(f"{parser.prog}: warning: deprecated: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", help="checkpoint (default: the config's MODEL.WEIGHTS)")
    parser.add_argument("--name", help="the registered dataset to take the image from (default: "
                        "the config's DATASETS.TEST[0])")
    add_dataset_argument(parser, help="register a COCO-format dataset under NAME (repeatable), "
                         "added to the config's DATASETS.REGISTER_COCO, of which only --name's "
                         "is registered (all when the own-data recipe is applied)")
    parser.add_argument("--register", nargs=3, action=_FormerRegister, dest="dataset",
                        help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help="image index in the dataset")
    parser.add_argument("--matchers", nargs="+", help="default: every registered matcher")
    parser.add_argument("--iteration", type=int, default=0,
                        help="training iteration the matchers see (schedules)")
    parser.add_argument("--output", default="output/assignment.png")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    return parser


def main(argv=None) -> Path:
    args = build_parser().parse_args(argv)
    cfg = setup(args)
    dataset = args.name or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if dataset is None:
        raise SystemExit("no --name and the config has no DATASETS.TEST")
    register_coco_datasets([e for e in cfg.DATASETS.REGISTER_COCO if e[0] == dataset])  # only it
    names = args.matchers or sorted(name for name, _ in MATCHER_REGISTRY)
    unknown = [name for name in names if name not in MATCHER_REGISTRY]
    if unknown:
        raise SystemExit(f"--matchers: unknown {unknown}; registered: "
                         f"{', '.join(sorted(n for n, _ in MATCHER_REGISTRY))}")
    example = load_example(cfg, dataset, args.index)
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        load_weights(model, cfg, trained=args.weights is not None
                     or "MODEL.WEIGHTS" in args.opts[0::2])
    model.eval()
    inputs = model.assignment_inputs([example], args.iteration)
    with torch.no_grad():
        results = assign(cfg, inputs, names)
    weights = Path(cfg.MODEL.WEIGHTS).name if cfg.MODEL.WEIGHTS else "untrained weights"
    title = (f"{Path(args.config_file).name}, {weights}; {dataset} image {args.index} "
             f"({Path(example['file_name']).name}), {len(inputs.gt_boxes[0])} GT boxes")
    output = Path(args.output)
    render(output, example, inputs, results, cfg.INPUT.FORMAT, title)
    print(f"wrote {output}")
    return output


if __name__ == "__main__":
    main()
