"""The calibration search on its own: order, ties, bounds, errors, the validation split."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgepack.errors import ConfigError, ConversionError
from edgepack.tune import (
    CONFIDENCE,
    MIN_VALIDATION_SAMPLES,
    Candidate,
    PrecisionPlan,
    Rung,
    Score,
    SearchResult,
    climb_ladder,
    group_boundary,
    grouped_energies,
    resampled_wins,
    search_calibration,
    search_precisions,
    validation_split,
)

CANDIDATES = [Candidate("own"), Candidate("a", {"x": 1}), Candidate("b", {"x": 2})]


def scores(**by_name: Score):
    return lambda candidate: by_name[candidate.name]


def test_the_highest_sqnr_among_the_fewest_failures_wins() -> None:
    result = search_calibration(
        CANDIDATES,
        scores(own=Score(1, 40.0, 0.9), a=Score(0, 20.0, 1.0), b=Score(0, 25.5, 1.0)),
        max_candidates=8,
        max_seconds=60,
    )
    assert result.chosen.name == "b"
    assert [t.candidate.name for t in result.trials] == ["own", "a", "b"]
    assert result.default.score == Score(1, 40.0, 0.9)
    assert result.best.score == Score(0, 25.5, 1.0)
    assert result.stopped is None


def test_a_tie_keeps_the_earlier_candidate_so_the_profile_choice_stays() -> None:
    result = search_calibration(
        CANDIDATES,
        scores(own=Score(0, 30.001, 1.0), a=Score(0, 30.004, 1.0), b=Score(0, 29.0, 1.0)),
        max_candidates=8,
        max_seconds=60,
    )
    assert result.chosen.name == "own"  # 30.00 and 30.00 as printed


def test_a_tie_of_the_folds_median_is_broken_by_the_pooled_sqnr() -> None:
    """The folds' median can sit on a floor every candidate shares (an int8 output's own
    step: digits measured 61.49 dB for six of eight candidates); the pooled SQNR of all
    validation samples then decides, and ties on both keep the earlier candidate."""
    result = search_calibration(
        CANDIDATES,
        scores(
            own=Score(0, 61.488, 1.0, 49.85),
            a=Score(0, 61.489, 1.0, 50.38),
            b=Score(0, 61.49, 1.0, 50.379),
        ),
        max_candidates=8,
        max_seconds=60,
    )
    assert result.chosen.name == "a"
    assert result.best.to_dict()["pooled_sqnr_db"] == 50.38


def test_max_candidates_bounds_the_search_and_is_recorded() -> None:
    result = search_calibration(
        CANDIDATES,
        scores(own=Score(0, 10.0, 1.0), a=Score(0, 20.0, 1.0), b=Score(0, 30.0, 1.0)),
        max_candidates=2,
        max_seconds=60,
    )
    assert result.chosen.name == "a"
    assert len(result.trials) == 2
    assert result.stopped == "max_candidates = 2 reached"


def test_max_seconds_stops_after_the_first_candidate_at_least() -> None:
    ticks = itertools.count(0, 100)  # every clock reading is 100 s later
    result = search_calibration(
        CANDIDATES,
        scores(own=Score(0, 10.0, 1.0), a=Score(0, 20.0, 1.0), b=Score(0, 30.0, 1.0)),
        max_candidates=8,
        max_seconds=150,
        clock=lambda: float(next(ticks)),
    )
    assert [t.candidate.name for t in result.trials] == ["own"]
    assert result.stopped == "max_seconds = 150 reached after 1 candidates"


def test_a_candidate_that_fails_to_build_is_recorded_and_skipped() -> None:
    def evaluate(candidate: Candidate) -> Score:
        if candidate.name == "a":
            raise ConversionError("onnxruntime could not quantize the model: boom")
        return Score(0, 10.0 if candidate.name == "own" else 12.0, None)

    result = search_calibration(CANDIDATES, evaluate, max_candidates=8, max_seconds=60)
    assert result.chosen.name == "b"
    failed = result.trials[1].to_dict()
    assert failed["error"] == "onnxruntime could not quantize the model: boom"
    assert failed["min_sqnr_db"] is None


def test_when_every_candidate_fails_the_first_error_is_raised() -> None:
    def evaluate(candidate: Candidate) -> Score:
        raise ConversionError(f"no {candidate.name}")

    with pytest.raises(ConversionError, match="no own"):
        search_calibration(CANDIDATES, evaluate, max_candidates=8, max_seconds=60)


def test_an_infinite_sqnr_is_the_best_and_recorded_as_null() -> None:
    result = search_calibration(
        CANDIDATES[:2],
        scores(own=Score(0, 50.0, 1.0), a=Score(0, float("inf"), 1.0)),
        max_candidates=8,
        max_seconds=60,
    )
    assert result.chosen.name == "a"
    assert result.best.to_dict()["min_sqnr_db"] is None


def test_the_validation_part_is_the_last_fraction_of_the_calibration_samples() -> None:
    refs = list(range(200))
    fitting, validating = validation_split(refs, 0.2)
    assert fitting == tuple(range(160))
    assert validating == tuple(range(160, 200))


def test_the_validation_part_has_a_minimum_and_too_few_samples_are_refused() -> None:
    fitting, validating = validation_split(list(range(40)), 0.2)
    assert len(validating) == MIN_VALIDATION_SAMPLES
    assert len(fitting) == 40 - MIN_VALIDATION_SAMPLES
    with pytest.raises(ConfigError, match="31 calibration samples are too few"):
        validation_split(list(range(31)), 0.2)


RANKED = [(f"layer{i}", (f"t{i}a", f"t{i}b")) for i in range(10)]


def needs_first(count: int):
    """The budget holds once the first ``count`` ranked layers are widened; the score grows
    with each widened layer."""

    def evaluate(plan: PrecisionPlan) -> tuple[Score, bool]:
        widened = len(plan.layers)
        holds = all(f"layer{i}" in plan.layers for i in range(count))
        return Score(0 if holds else 1, 10.0 + widened, None), holds

    return evaluate


def test_widening_doubles_then_bisects_to_the_fewest_layers_that_hold() -> None:
    search = search_precisions(RANKED, "int16", needs_first(5), max_layers=10, max_seconds=60)
    assert [len(t.plan.layers) for t in search.trials] == [1, 2, 4, 8, 6, 5]
    assert search.holds and list(search.chosen.layers) == [f"layer{i}" for i in range(5)]
    assert set(search.chosen.layers.values()) == {"int16"}
    assert search.chosen.tensors_at("int16")[:2] == ["t0a", "t0b"]
    assert search.stopped is None


def test_one_harmful_layer_is_found_with_one_trial() -> None:
    search = search_precisions(RANKED, "float", needs_first(1), max_layers=10, max_seconds=60)
    assert len(search.trials) == 1 and search.chosen.layers == {"layer0": "float"}


def test_the_limit_is_respected_and_the_best_plan_kept_when_none_holds() -> None:
    search = search_precisions(RANKED, "int16", needs_first(5), max_layers=3, max_seconds=60)
    assert [len(t.plan.layers) for t in search.trials] == [1, 2, 3]
    assert not search.holds and len(search.chosen.layers) == 3  # the highest score
    assert search.stopped == "the limit of 3 widened layers reached"


def test_a_limit_of_zero_tries_nothing() -> None:
    search = search_precisions(RANKED, "int16", needs_first(1), max_layers=0, max_seconds=60)
    assert search.trials == () and not search.chosen and not search.holds
    assert search.stopped == "the limit of 0 widened layers reached"


def needs_precision(precision: str, count: int):
    """The budget holds once the first ``count`` layers are at ``precision``; a wider plan
    scores higher (one dB per layer, 5 more when float)."""

    def evaluate(plan: PrecisionPlan) -> tuple[Score, bool]:
        at = [layer for layer, p in plan.layers.items() if p == precision]
        holds = all(f"layer{i}" in at for i in range(count))
        bonus = 5.0 if "float" in plan.layers.values() else 0.0
        return Score(0 if holds else 1, 10.0 + len(plan.layers) + bonus, None), holds

    return evaluate


def test_the_ladder_stops_at_the_narrowest_precision_that_holds() -> None:
    rungs = [Rung("int16", 10), Rung("float", 4)]
    search = climb_ladder(RANKED, rungs, needs_precision("int16", 3), max_seconds=60)
    assert search.holds and search.chosen.layers == {f"layer{i}": "int16" for i in range(3)}
    assert {p for t in search.trials for p in t.plan.layers.values()} == {"int16"}


def test_layers_go_float_only_when_int16_cannot_hold_and_within_the_float_limit() -> None:
    rungs = [Rung("int16", 4), Rung("float", 2)]
    search = climb_ladder(RANKED, rungs, needs_precision("float", 2), max_seconds=60)
    sizes = [(set(t.plan.layers.values()), len(t.plan.layers)) for t in search.trials]
    assert sizes == [({"int16"}, 1), ({"int16"}, 2), ({"int16"}, 4), ({"float"}, 1), ({"float"}, 2)]
    assert search.holds and search.chosen.layers == {"layer0": "float", "layer1": "float"}
    assert search.chosen.tensors_at("float") == ["t0a", "t0b", "t1a", "t1b"]


def test_when_no_rung_holds_the_best_plan_of_all_is_kept_and_the_limit_named() -> None:
    rungs = [Rung("int16", 2), Rung("float", 1)]
    search = climb_ladder(RANKED, rungs, needs_precision("float", 3), max_seconds=60)
    assert not search.holds
    assert search.chosen.layers == {"layer0": "float"}  # 16 dB beats int16's 12 dB
    assert search.stopped == "the limit of 1 widened layers reached"


def test_the_ladder_stops_when_its_time_is_spent() -> None:
    ticks = itertools.count(0, 100)
    rungs = [Rung("int16", 1), Rung("float", 1)]
    search = climb_ladder(
        RANKED, rungs, needs_precision("float", 1), max_seconds=150, clock=lambda: next(ticks)
    )
    assert [set(t.plan.layers.values()) for t in search.trials] == [{"int16"}]
    assert search.stopped == "max_seconds = 150 reached after 1 plans"
    assert not search.holds


def test_an_empty_ladder_tries_nothing() -> None:
    search = climb_ladder(RANKED, [], needs_precision("int16", 1), max_seconds=60)
    assert search.trials == () and not search.chosen and not search.holds


def test_a_plan_that_scores_below_the_bundle_without_one_is_not_kept() -> None:
    """A per-layer quantizer's plan can score below the target's own int8 (measured: fer
    tflite, eight int16 layers through ai-edge-quantizer, 21.08 dB against the converter's
    27.16 dB): when no plan holds, one is kept only if it beats the bundle without a plan."""
    rungs = [Rung("int16", 2)]
    evaluate = needs_precision("int16", 5)  # nothing holds; scores 11 and 12 dB
    kept = climb_ladder(RANKED, rungs, evaluate, max_seconds=60, baseline=Score(1, 11.5, None))
    assert kept.chosen.layers == {"layer0": "int16", "layer1": "int16"}
    dropped = climb_ladder(RANKED, rungs, evaluate, max_seconds=60, baseline=Score(1, 12.0, None))
    assert not dropped.chosen and not dropped.holds
    assert len(dropped.trials) == 2  # still recorded


def test_a_candidate_replaces_the_profile_choice_only_by_winning_most_folds() -> None:
    """A higher median from two folds' gains is not enough: 'a' wins folds 1 and 2 only
    (ties are no win), 'b' wins three of five by less, and only 'b' may replace 'own'."""
    own = Score(0, 30.0, 1.0, 28.0, (30.0, 30.0, 30.0, 31.0, 29.0))
    a = Score(0, 32.0, 1.0, 29.0, (35.0, 32.0, 30.0, 30.0, 28.0))
    b = Score(0, 30.5, 1.0, 28.5, (30.5, 30.5, 30.1, 30.0, 28.0))
    only_a = assert_only_b_replaces_own(own, a, b)
    assert only_a.trials[1].to_dict()["folds_sqnr_db"] == [35.0, 32.0, 30.0, 30.0, 28.0]


def assert_only_b_replaces_own(own: Score, a: Score, b: Score) -> SearchResult:
    """'b' is kept among all three; 'a' alone does not replace 'own' (that search returned)."""
    result = search_calibration(
        CANDIDATES, scores(own=own, a=a, b=b), max_candidates=8, max_seconds=60
    )
    assert result.chosen.name == "b"
    only_a = search_calibration(
        CANDIDATES[:2], scores(own=own, a=a), max_candidates=8, max_seconds=60
    )
    assert only_a.chosen.name == "own"
    return only_a


def test_fewer_missed_thresholds_replace_the_profile_choice_without_fold_wins() -> None:
    own = Score(1, 14.0, 1.0, 13.0, (14.0, 14.0, 14.0))
    a = Score(0, 15.0, 1.0, 14.0, (15.0, 13.0, 13.0))
    result = search_calibration(
        CANDIDATES[:2], scores(own=own, a=a), max_candidates=8, max_seconds=60
    )
    assert result.chosen.name == "a"


def test_a_plan_must_win_most_folds_over_the_bundle_without_one() -> None:
    """The calibration search's rule holds for plans too: a higher median from two folds
    does not replace the bundle without a plan when nothing holds."""
    baseline = Score(1, 20.0, None, 19.0, (20.0, 20.0, 20.0, 21.0, 19.0))
    lucky = Score(1, 22.0, None, 19.5, (25.0, 22.0, 20.0, 20.0, 18.0))  # wins 2 of 5

    def evaluate(plan: PrecisionPlan) -> tuple[Score, bool]:
        return lucky, False

    search = climb_ladder(RANKED[:1], [Rung("int16", 1)], evaluate, 60, baseline=baseline)
    assert len(search.trials) == 1 and not search.chosen


def energies(*folds: np.ndarray) -> tuple:
    """One output per fold, whose samples all carry unit signal energy and the noise given."""
    return tuple(((np.ones(len(noise)), noise),) for noise in folds)


def test_a_gain_carried_by_a_few_samples_does_not_replace_the_profile_choice() -> None:
    """Winning most folds is not enough when the gain rests on a few validation samples:
    'a' is better on one sample of each of three folds and worse on the others (its median
    is higher, but resamples that leave out any of those samples favour 'own'); 'b' is
    better on every sample."""
    rng = np.random.default_rng(1)
    noise = [rng.uniform(0.009, 0.011, 13) for _ in range(5)]
    lucky = [n * 1.05 for n in noise]
    for fold in lucky[:3]:
        fold[0] = 0.0001  # one sample carries each fold's gain
    folds = (30.0, 30.0, 30.0, 30.0, 30.0)
    own = Score(0, 30.0, 1.0, 20.0, folds, energies(*noise))
    a = Score(0, 31.0, 1.0, 20.3, (31.0, 31.0, 31.0, 30.0, 30.0), energies(*lucky))
    b = Score(0, 30.5, 1.0, 21.0, (30.5,) * 5, energies(*(n * 0.8 for n in noise)))
    assert 0.1 < resampled_wins(a.energies, own.energies) < CONFIDENCE
    assert resampled_wins(b.energies, own.energies) == 1.0
    only_a = assert_only_b_replaces_own(own, a, b)
    assert only_a.trials[1].may_replace is False
    assert only_a.trials[1].resampled_wins == resampled_wins(a.energies, own.energies)


def test_where_the_own_choice_misses_the_budget_most_folds_are_enough() -> None:
    """The resampling test guards a bundle that holds the budget; with the own choice
    missing it as well, the candidate that wins most folds replaces it."""
    rng = np.random.default_rng(1)
    noise = [rng.uniform(0.009, 0.011, 13) for _ in range(5)]
    lucky = [n * 1.05 for n in noise]
    for fold in lucky[:3]:
        fold[0] = 0.0001
    folds = (30.0, 30.0, 30.0, 30.0, 30.0)
    own = Score(1, 30.0, 1.0, 20.0, folds, energies(*noise))
    a = Score(1, 31.0, 1.0, 20.3, (31.0, 31.0, 31.0, 30.0, 30.0), energies(*lucky))
    assert resampled_wins(a.energies, own.energies) < CONFIDENCE
    result = search_calibration(
        CANDIDATES[:2], scores(own=own, a=a), max_candidates=8, max_seconds=60
    )
    assert result.chosen.name == "a" and result.trials[1].may_replace is True
    two_folds = Score(1, 31.0, 1.0, 20.3, (31.0, 31.0, 30.0, 30.0, 30.0), energies(*lucky))
    result = search_calibration(
        CANDIDATES[:2], scores(own=own, a=two_folds), max_candidates=8, max_seconds=60
    )
    assert result.chosen.name == "own"  # most folds still needed


def test_fold_cuts_fall_between_groups() -> None:
    groups = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3]
    assert group_boundary(groups, 5) == 4
    assert group_boundary(groups, 6) == 8  # a tie goes to the later cut
    assert group_boundary(groups, 0) == 0 and group_boundary(groups, 13) == 13
    assert group_boundary(list(range(10)), 7) == 7  # every sample its own group


def test_grouped_resampling_draws_whole_groups() -> None:
    """Four rotations of each of three pages: a gain that rests on one page is three
    samples' worth of evidence when they are independent, one when they are grouped."""
    groups = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    noise = np.full(12, 0.01)
    lucky = noise.copy()
    lucky[:4] = 0.001  # better on every rotation of page 0, worse on the rest
    lucky[4:] = 0.0105
    grouped = grouped_energies(energies(lucky)[0], groups)
    assert [len(part) for part in grouped[0]] == [3, 3]
    np.testing.assert_allclose(grouped[0][1], [0.004, 0.042, 0.042])
    ungrouped = energies(noise)[0]
    assert grouped_energies(ungrouped, ()) is ungrouped
    independent = resampled_wins(energies(lucky), energies(noise))
    as_groups = resampled_wins(
        (grouped_energies(energies(lucky)[0], groups),),
        (grouped_energies(energies(noise)[0], groups),),
    )
    assert as_groups < independent, (as_groups, independent)


def test_resampled_wins_rank_by_the_folds_median_of_the_worst_output() -> None:
    noise = np.linspace(0.01, 0.02, 32)
    plain = (((np.ones(32), noise), (np.ones(32), noise)),)
    better_first = (((np.ones(32), noise * 0.5), (np.ones(32), noise * 3.0)),)
    assert resampled_wins(better_first, plain) == 0.0  # its second output is the worse
    assert resampled_wins(plain, better_first) == 1.0
    silent = energies(np.zeros(32))  # no noise at all: an infinite SQNR wins
    assert resampled_wins(silent, energies(noise)) == 1.0
    assert resampled_wins(energies(noise), energies(noise)) == 0.0  # ties are no win
    assert resampled_wins(energies(noise * 0.99), energies(noise)) == 1.0
    # one fold of three with a huge loss does not move the median
    spoiled = energies(noise * 100, noise * 0.9, noise * 0.9)
    assert resampled_wins(spoiled, energies(noise, noise, noise)) > 0.99
    assert resampled_wins(spoiled, energies(noise, noise, noise)) == resampled_wins(
        spoiled, energies(noise, noise, noise)
    )
