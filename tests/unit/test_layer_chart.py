"""The per-layer HTML chart of a large model: the worst layers in execution order, every layer
in the table, the budget drawn."""

from __future__ import annotations

import re

import numpy as np

from edgepack.drift.html import CHART_LAYERS, _layers_section, chart_layers
from edgepack.drift.layers import LayerDrift, LayerReport


def _report(count: int) -> LayerReport:
    rng = np.random.default_rng(0)
    drifts = [
        LayerDrift(f"layer{i}", f"t{i}", (4,), float(v), 0.99, i)
        for i, v in enumerate(rng.uniform(10, 60, count))
    ]
    drifts.sort(key=lambda d: (d.sqnr_db, d.order))
    return LayerReport(drifts, ["folded_bn"], 8, "by name", path="unoptimized")


def test_a_160_layer_chart_draws_the_worst_40_in_execution_order() -> None:
    report = _report(160)
    shown = chart_layers(report)
    assert len(shown) == CHART_LAYERS == 40
    assert [d.order for d in shown] == sorted(d.order for d in shown)
    assert {d.layer for d in shown} == {d.layer for d in report.layers[:40]}
    assert report.layers[0] in shown  # the worst layer is drawn
    page = _layers_section(report, min_sqnr=20.0)
    assert len(re.findall(r"<tr><td>layer\d+</td>", page)) == 160  # the table has every layer
    assert "unoptimized path" in page and "folded_bn" in page
    assert page.count("<img") == 1


def test_a_small_model_draws_every_layer() -> None:
    report = _report(12)
    assert len(chart_layers(report)) == 12
