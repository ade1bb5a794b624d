"""docs/methods/adding-a-method.md, as a user would follow it: its example matcher and
LazyConfig, copied from the page into a folder outside the package, train two iterations
through train_net.py and tools/lazyconfig_train_net.py, are benchmarked by
benchmarks/matchers.py --quick and pass every registry-driven invariant test, with no
other change."""
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO

from lada.data.synthetic import SyntheticSpec, generate

PAGE = REPO / "docs/methods/adding-a-method.md"


def _example(name: str) -> str:
    """The code block that follows ``<!-- example: name -->`` on the page."""
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```python\n(.*?)```", PAGE.read_text(),
                      re.DOTALL)
    assert match, f"{PAGE} has no example {name}"
    return match.group(1)


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    (folder / "my_matcher.py").write_text(_example("my_matcher.py"))
    lazy = _example("my_lazy_config.py").replace('"my_matcher.py"', repr(str(folder / "my_matcher.py")))
    (folder / "my_lazy_config.py").write_text(lazy)
    return folder, generate(folder / "data", SyntheticSpec(num_train=4, num_val=2))


def _run(command, **env):
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout + done.stderr


def _datasets(tiny):
    return ["--dataset", "tiny_train", str(tiny["train"]), str(tiny["train_images"]),
            "--dataset", "tiny_val", str(tiny["val"]), str(tiny["val_images"])]


def test_train_net_trains_it_and_the_run_folder_records_it(user_folder):
    folder, tiny = user_folder
    out = folder / "run"
    _run([sys.executable, "train_net.py", "--config-file", "configs/quick/Base-Quick.yaml",
          *_datasets(tiny), "CUSTOM_IMPORTS", f"['{folder / 'my_matcher.py'}']",
          "MODEL.MATCHER.NAME", "nearest_k", "MODEL.MATCHER.NEAREST_K.K", "6",
          "MODEL.FCOS.NORMALIZER", "num_pos", "DATASETS.REGISTER_COCO", "[]",
          "DATASETS.TRAIN", "('tiny_train',)", "DATASETS.TEST", "('tiny_val',)",
          "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2",
          "SOLVER.STEPS", "(1,)", "SOLVER.WARMUP_ITERS", "1", "OUTPUT_DIR", str(out)])
    lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [line["iteration"] for line in lines if "total_loss" in line] == [1]
    assert lines[0]["assign/pos_per_image"] > 0  # its assignment trained the model
    saved = (out / "config.yaml").read_text()
    assert str(folder / "my_matcher.py") in saved and "NEAREST_K:\n      K: 6" in saved


def test_a_lazyconfig_trains_it(user_folder):
    folder, tiny = user_folder
    out = folder / "lazy_run"
    _run([sys.executable, "tools/lazyconfig_train_net.py",
          "--config-file", str(folder / "my_lazy_config.py"), *_datasets(tiny),
          "dataloader.register_coco=[]", "dataloader.train.dataset.names=[tiny_train]",
          "dataloader.test.dataset.names=[tiny_val]", "dataloader.train.num_workers=0",
          "dataloader.test.num_workers=0", "dataloader.train.total_batch_size=2",
          "train.max_iter=2", "lr_multiplier.steps=[1]", "lr_multiplier.warmup_iters=1",
          f"train.output_dir={out}"])
    lines = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert [line["iteration"] for line in lines if "total_loss" in line] == [1]
    assert "my_matcher.NearestKMatcher" in (out / "config.yaml").read_text()


def test_the_benchmark_measures_it(user_folder):
    folder, _ = user_folder
    _run([sys.executable, "benchmarks/matchers.py", "--quick", "--import",
          str(folder / "my_matcher.py"), "--matchers", "fcos", "nearest_k",
          "--output-dir", str(folder / "bench")])
    rows = (folder / "bench/matchers.csv").read_text()
    assert rows.count("nearest_k") == 4  # G = 1 and 10, boxes of 4-124 and 4-304 px


def test_every_registry_driven_test_runs_on_it(user_folder):
    folder, _ = user_folder
    log = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "tests/matchers/test_invariants.py", "tests/matchers/test_scale.py",
                "-k", "nearest_k"], LADA_CUSTOM_IMPORTS=str(folder / "my_matcher.py"))
    invariants = (REPO / "tests/matchers/test_invariants.py").read_text().count("\ndef test_")
    passed = int(re.search(r"(\d+) passed", log).group(1))
    assert passed >= invariants and "failed" not in log
