"""Generate (or reuse, if already up to date) the embedded synthetic COCO dataset.

Usage, from the repository root:  python datasets/make_synthetic.py [--num-train 1500 ...]
See datasets/SYNTHETIC.md and lada/data/synthetic.py for what the dataset contains.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lada.data.synthetic import EMBEDDED_ROOT, SyntheticSpec, generate


def main(argv: list[str] | None = None) -> None:
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent / EMBEDDED_ROOT,
                        help="output directory (default: datasets/synthetic next to this script)")
    parser.add_argument("--num-train", type=int, default=defaults.num_train)
    parser.add_argument("--num-val", type=int, default=defaults.num_val)
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--max-objects", type=int, default=defaults.max_objects)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)

    try:
        spec = SyntheticSpec(num_train=args.num_train, num_val=args.num_val, image_size=args.image_size,
                             max_objects=args.max_objects, seed=args.seed)
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    paths = generate(args.root, spec)
    print(f"{spec} ready in {time.perf_counter() - start:.1f} s")
    for split in ("train", "val"):
        data = json.loads(paths[split].read_text())
        annotated = {a["image_id"] for a in data["annotations"]}
        empty = sum(im["id"] not in annotated for im in data["images"])
        print(f"{split:5s} {len(data['images']):5d} images ({empty} without objects), "
              f"{len(data['annotations']):5d} boxes  json={paths[split]}  images={paths[split + '_images']}")


if __name__ == "__main__":
    main()
