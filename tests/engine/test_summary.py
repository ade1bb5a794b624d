"""The end-of-run summary: lada's warnings repeated, the outputs that exist, this run's AP
and, for a shipped quick config, the README's figure read from the README's table."""
import logging

import yaml
from conftest import REPO

from lada.engine import build_argument_parser, command_line_cfg, summarize_run
from lada.engine.summary import WarningCollector, readme_figure, summary_lines


def _readme_row(name):
    """The README quick-configs table's header and the row of ``name``, read plainly."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("### Quick configs")))
    table = [line for line in lines[start:] if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    row = next(line for line in table if line.startswith(f"| `{name}` |"))
    return dict(zip(header, (cell.strip() for cell in row.strip("|").split("|"))))


def test_the_readme_figure_of_a_quick_config_and_its_lazy_twin():
    row = _readme_row("atss")
    figure = readme_figure(str(REPO / "configs/quick/atss.yaml"))
    assert figure.cells == {"AP": row["AP"], "AP50": row["AP50"], "AP@ar>=3": row["AP@ar>=3"]}
    readme = (REPO / "README.md").read_text()
    above = readme[readme.index("### Quick configs"):readme.index("| config |")]
    assert figure.stale == ("to be re-measured" in above)
    assert readme_figure(str(REPO / "configs/lazy/quick_atss.py")) == figure
    for other in ("configs/quick/own_data_atss.yaml", "configs/quick/Base-Quick.yaml",
                  "configs/COCO-Detection/atss_R_50_FPN_1x.yaml"):
        assert readme_figure(str(REPO / other)) is None, other


def test_summary_lines(tmp_path):
    for name in ("model_final.pth", "metrics.json"):
        (tmp_path / name).write_text("")
    long = "\n".join(f"line {i}" for i in range(5))
    figure = readme_figure(str(REPO / "configs/quick/lada.yaml"))
    lines = summary_lines(str(tmp_path), ["mismatch", long, "mismatch"],
                          {"bbox": {"AP": 12.34, "AP50": 30.0, "APs": 1.0}}, figure, (2, 407))
    assert lines == [
        "Summary of the run",
        "  2 warning(s) during the run, repeated:",
        "  - mismatch",
        "  - line 0\n    line 1\n    line 2 [... 2 more lines in the log]",
        f"  model_final.pth {tmp_path / 'model_final.pth'}",
        f"  metrics.json {tmp_path / 'metrics.json'}",
        "  this run: bbox/AP 12.3, bbox/AP50 30.0",
        f"  README, Results (its conditions are there), `lada`: {figure.text()}",
        "  (this run trained 2 of the config's 407 iterations: not comparable)",
    ]
    assert summary_lines(str(tmp_path), [])[1] == "  no warning from lada during the run"


def test_the_collector_keeps_the_warnings_of_lada_loggers_only():
    with WarningCollector() as collected:
        logging.getLogger("lada.modeling.presets").warning("detector mismatch")
        logging.getLogger("lada.data").info("an information")
        logging.getLogger("detectron2").warning("detectron2's own")
    logging.getLogger("lada.engine").warning("after the run")
    assert collected.messages == ["detector mismatch"]


def test_a_quick_config_run_on_its_own_data_gets_the_readme_figure(tmp_path, caplog):
    iterations = yaml.safe_load((REPO / "configs/quick/Base-Quick.yaml").read_text())["SOLVER"]
    common = ["--config-file", str(REPO / "configs/quick/atss.yaml")]
    opts = ["SOLVER.MAX_ITER", "5", "OUTPUT_DIR", str(tmp_path)]
    args = build_argument_parser().parse_args([*common, *opts])
    with caplog.at_level(logging.INFO, logger="lada.engine.summary"):
        summarize_run(command_line_cfg(args), args, [], None)
    assert f"`atss`: {readme_figure(common[1]).text()}" in caplog.text
    assert (f"(this run trained 5 of the config's {iterations['MAX_ITER']} iterations: not "
            "comparable)") in caplog.text
    caplog.clear()
    mine = ["--dataset", "mine", "train.json", "images", "DATASETS.TRAIN", "('mine',)"]
    args = build_argument_parser().parse_args([*common, *mine, *opts])
    with caplog.at_level(logging.INFO, logger="lada.engine.summary"):
        summarize_run(command_line_cfg(args), args, [], None)
    assert "Summary of the run" in caplog.text and "README" not in caplog.text
