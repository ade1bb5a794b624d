"""The study's aggregation, markdown table and chart on hand-made run records whose
means, standard deviations and t-tests are computed by hand below."""
import math

import numpy as np
import pytest
from matplotlib.container import BarContainer
from PIL import Image
from scipy import stats

from lada.study import bar_chart, markdown_report, summarize, table_metrics, welch_p_value

NAN = float("nan")


def record(name, seed, ap, slender, apl=NAN):
    return {"name": name, "seed": seed, "wall_seconds": 120.0 + seed,
            "metrics": {"AP": ap, "APl": apl, "AP-bar": 1.0, "AP@ar<3": ap + 5,
                        "AP-bar@ar>=3": 2.0, "AP@ar>=3": slender}}


# "a": AP 30, 32, 34 -> mean 32, sample variance (4 + 0 + 4) / 2 = 4, std 2.
# "b": AP 20, 21, 25 -> mean 22, sample variance (4 + 1 + 9) / 2 = 7, std sqrt(7) = 2.65.
RECORDS = [record("a", 2, 34, 10), record("b", 0, 20, 8), record("a", 0, 30, 10),
           record("a", 1, 32, 13), record("b", 1, 21, 8), record("b", 2, 25, 11)]


def test_table_metrics_keep_coco_order_then_bands_without_per_class():
    names = ["AP-bar@ar>=3", "AP@ar<3", "APs", "AP-bar", "AP", "AP@ar>=3", "AP50"]
    assert table_metrics(names) == ["AP", "AP50", "APs", "AP@ar<3", "AP@ar>=3"]


def test_summary_mean_and_sample_std():
    a, b = summarize(RECORDS)
    assert (a.name, a.seeds, b.name, b.seeds) == ("a", [0, 1, 2], "b", [0, 1, 2])
    assert a.values["AP"] == [30, 32, 34]  # seed order
    assert (a.mean("AP"), a.std("AP")) == (32, 2)
    assert (b.mean("AP"), b.std("AP")) == pytest.approx((22, math.sqrt(7)))
    assert math.isnan(a.mean("APl"))  # undefined on a seed -> undefined


def test_welch_p_value_by_hand():
    # t = (32 - 22) / sqrt(4/3 + 7/3); Welch-Satterthwaite df = (11/3)^2 /
    # ((4/3)^2 / 2 + (7/3)^2 / 2) = 242 / 65; two-sided p from the t distribution.
    t, df = 10 / math.sqrt(11 / 3), 242 / 65
    assert welch_p_value([30, 32, 34], [20, 21, 25]) == pytest.approx(2 * stats.t.sf(t, df))
    assert math.isnan(welch_p_value([30], [20, 21]))
    assert math.isnan(welch_p_value([30, NAN], [20, 21]))


def test_markdown_table():
    summaries = summarize(RECORDS)
    text = markdown_report(summaries, ["AP", "APl", "AP@ar>=3"], "# header")
    lines = text.splitlines()
    assert lines[0] == "# header"
    assert "| config | seeds | AP | APl | AP@ar>=3 | train min / run |" in lines
    # a: AP@ar>=3 10, 13, 10 -> mean 11, variance (1 + 4 + 1) / 2 = 3, std 1.73;
    # wall time (120 + 121 + 122) / 3 s = 2.0 min.
    assert "| `a` | 3 | 32.0 ± 2.0 | n/a | 11.0 ± 1.7 | 2.0 |" in lines
    assert "| `b` | 3 | 22.0 ± 2.6 | n/a | 9.0 ± 1.7 | 2.0 |" in lines
    p = welch_p_value([30, 32, 34], [20, 21, 25])
    assert f"| `a` |  | +10.0 (p {p:.2f}) |" in lines
    assert f"| `b` | -10.0 (p {p:.2f}) |  |" in lines


def test_single_seed_shows_the_value_without_deviation():
    text = markdown_report(summarize([record("a", 0, 30.04, 9.96)]), ["AP", "AP@ar>=3"], "h")
    assert "| `a` | 1 | 30.0 | 10.0 | 2.0 |" in text.splitlines()
    assert "Welch" not in text


def test_bar_chart_bars_and_error_bars(tmp_path):
    summaries = summarize(RECORDS)
    path = tmp_path / "chart.png"
    figure = bar_chart(summaries, ["AP", "APl", "AP@ar<3", "AP@ar>=3"], path, "title")
    axes = figure.axes[0]
    # APl is undefined: not drawn. Groups AP, AP@ar<3, AP@ar>=3; bars of "a" then "b".
    assert [t.get_text() for t in axes.get_xticklabels()] == ["AP", "AP@ar<3", "AP@ar>=3"]
    heights = [bar.get_height() for bar in axes.patches]
    assert heights == pytest.approx([32, 37, 11, 22, 27, 9])
    half_lengths = []
    for container in [c for c in axes.containers if isinstance(c, BarContainer)]:
        segments = container.errorbar.lines[2][0].get_segments()
        half_lengths += [abs(s[1][1] - s[0][1]) / 2 for s in segments]
    assert half_lengths == pytest.approx([2, 2, math.sqrt(3), math.sqrt(7), math.sqrt(7), math.sqrt(3)])

    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape == (400, 650, 3)  # figsize (1.5 x 3 groups + 2, 4) in at 100 dpi
    for color in [(0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)]:  # matplotlib's C0, C1
        assert (image == color).all(axis=2).sum() > 1000  # the bars, not only the legend
