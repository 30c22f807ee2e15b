"""The build table's tuning lines, from a manifest's tuning record."""

from __future__ import annotations

from edgepack.report_text import _effect_line, _precision_line, _tuning_line

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


def _trial(name: str, sqnr: float, folds: list[float], **judged: object) -> dict:
    return {
        "name": name, "min_sqnr_db": sqnr, "failures": 0, "error": None,
        "folds_sqnr_db": folds, "may_replace": None, "resampled_wins": None, **judged,
    }  # fmt: skip


def test_the_search_line_names_a_higher_score_it_did_not_trust() -> None:
    """fer onnx: the profile's choice kept against a candidate that won 4 of 5 folds and 83%
    of resamples; a candidate that scored lower is not named."""
    own = _trial("minmax, per-channel weights", 25.53, [25.5, 25.0, 25.6, 25.9, 25.2])
    lucky = _trial(
        "percentile 99.999, per-tensor weights", 26.49, [26.5, 26.1, 24.9, 26.8, 25.3],
        may_replace=False, resampled_wins=0.834,
    )  # fmt: skip
    worse = _trial("entropy", 17.2, [17.0] * 5, may_replace=False, resampled_wins=0.0)
    tuning = {
        "chosen": own["name"], "candidates": [own, lucky, worse],
        "validation_samples": 64, "seconds": 62.9, "stopped": None,
    }  # fmt: skip
    line = _tuning_line(tuning)
    assert line.startswith("calibration search kept minmax, per-channel weights (25.53 dB)")
    assert (
        "; percentile 99.999, per-tensor weights scored higher (26.49 dB) but beat the "
        "profile's own on 4 of 5 folds and in 83% of resampled validation sets: not a "
        "consistent gain (a switch needs most folds and 90%)"
    ) in line
    assert "entropy" not in line
    tuning["chosen"] = lucky["name"]
    lucky["may_replace"] = True
    assert "not a consistent gain" not in _tuning_line(tuning)
