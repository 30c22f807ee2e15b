"""The build table's tuning lines, from a manifest's tuning record."""

from __future__ import annotations

from edgepack.report_text import _effect_line, _precision_line

CHOSEN = {"name": "own", "min_sqnr_db": 24.61, "failures": 1, "error": None}


def _tuning(ranked: list[str], widened: list[str]) -> dict:
    layers = dict.fromkeys(widened, "float")
    return {
        "chosen": "own",
        "candidates": [CHOSEN],
        "precision": {
            "ranked": [{"layer": n, "own_share_db": 1.0, "sqnr_db": 20.0} for n in ranked],
            "trials": [{"layers": layers, "min_sqnr_db": 27.29, "holds": False}],
            "layers": layers,
            "holds": False,
            "stopped": None,
        },
    }


def test_a_missed_budget_names_the_layers_left_to_widen() -> None:
    line = _precision_line(_tuning(["a", "b", "c"], ["a"]), {})
    assert "kept a widened; layers that would also have to be widened or go float: b, c" in line


def test_when_every_ranked_layer_was_tried_the_line_says_the_drift_is_spread() -> None:
    """fer w8a8 at 30 dB: all five layers with an own share went float, 27.29 dB."""
    line = _precision_line(_tuning(["a", "b"], ["a", "b"]), {"precision_counts": {"int8": 3}})
    assert "all 2 layers with an own share of 0.1 dB or more were tried" in line
    assert "spread over layers that each add less; ops 3 int8" in line


def test_the_effect_line_gives_both_bundles_and_the_ratios() -> None:
    bundle = {"verdict": "fail", "min_sqnr_db": 21.97, "top1_agreement": 0.8889}
    effect = {
        "measured_on": "36 held-out samples",
        "latency_path": "emulator",
        "default": {**bundle, "size_bytes": 1000, "latency_ms": 2.0, "precision_counts": None},
        "tuned": {
            **bundle, "min_sqnr_db": 22.84, "size_bytes": 1130, "latency_ms": 1.88,
            "precision_counts": {"int8": 30, "int16": 0, "float": 11},
        },
    }  # fmt: skip
    assert _effect_line(effect) == (
        "default -> tuned on 36 held-out samples: 21.97 dB, agreement 88.89% (fail) -> "
        "22.84 dB, agreement 88.89% (fail); size x1.13, host latency x0.94 (emulator path); "
        "ops 30 int8, 11 float"
    )
