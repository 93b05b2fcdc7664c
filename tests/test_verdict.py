"""The verdict on the paper's orderings, on made-up numbers: holds, does not hold, cannot tell apart, not measured."""

import pytest

from harness.verdict import FAILS, HOLDS, NOT_MEASURED, UNCLEAR, Claim, has_learned, judge, seed_gap

VARIANTS = Claim("variant 3 is the best of the four", "Fig. 8a", "v3", ("v1", "v2", "v4"))


@pytest.mark.parametrize(
    "fvd,gap,verdict,reason",
    [
        ({"v3": 300, "v1": 400, "v2": 350, "v4": 331}, 30, HOLDS, "than v4 (the closest) by 31.0 > seed gap 30.0"),
        ({"v3": 300, "v1": 400, "v2": 250, "v4": 500}, 30, FAILS, "v2 is lower by 50.0 > seed gap 30.0"),
        ({"v3": 300, "v1": 400, "v2": 290, "v4": 500}, 30, UNCLEAR, "v2 differs by -10.0, within the seed gap 30.0"),
        ({"v3": 300, "v1": 400, "v2": 329, "v4": 500}, 30, UNCLEAR, "v2 differs by +29.0, within the seed gap 30.0"),
        ({"v3": 300, "v1": 400, "v2": 350, "v4": None}, 30, NOT_MEASURED, "no FVD for v4 at this scale"),
        ({"v3": 300, "v1": 400, "v2": 350, "v4": 500}, None, UNCLEAR, "no seed gap was measured"),
    ],
)
def test_verdicts_on_made_up_curves(fvd, gap, verdict, reason):
    v = judge(VARIANTS, fvd, gap)
    assert v.verdict == verdict and reason in v.reason
    assert v.fvd == {k: fvd.get(k) for k in ("v3", "v1", "v2", "v4")}


def test_a_failure_beyond_the_gap_wins_over_a_tie():
    """One model within the gap and one clearly better than the claimed-best: the claim does not hold."""
    v = judge(VARIANTS, {"v3": 300, "v1": 310, "v2": 200, "v4": 500}, 30)
    assert v.verdict == FAILS and v.reason.startswith("v2")


def test_seed_gap_by_hand():
    assert seed_gap(312.5, 300.0) == 12.5 and seed_gap(300.0, 312.5) == 12.5
    assert seed_gap(None, 300.0) is None


def test_overlapping_intervals_keep_a_difference_beyond_the_seed_gap_undecided():
    """A lucky small seed gap is not enough: the two FVDs' 95 % intervals must not overlap either."""
    fvd = {"v3": 300, "v1": 400, "v2": 350, "v4": 340}
    apart = {"v3": (290, 310), "v1": (390, 410), "v2": (340, 360), "v4": (330, 350)}
    assert judge(VARIANTS, fvd, 10, apart).verdict == HOLDS
    touching = dict(apart, v4=(305, 375))  # overlaps v3's (290, 310)
    v = judge(VARIANTS, fvd, 10, touching)
    assert v.verdict == UNCLEAR and "v4 differs by +40.0, beyond the seed gap 10.0 but within" in v.reason
    # the same for a failure: v2 lower by 50 beyond the gap, but the intervals overlap
    v = judge(VARIANTS, {**fvd, "v2": 250}, 10, {**apart, "v2": (240, 295)})
    assert v.verdict == UNCLEAR
    assert judge(VARIANTS, {**fvd, "v2": 250}, 10, {**apart, "v2": (240, 260)}).verdict == FAILS


def test_has_learned_needs_the_trained_interval_wholly_below_the_untrained_one():
    assert has_learned((10_247.3, 10_708.1), (6_033.1, 6_848.7)) is True  # the H200 mini run's Matten-S v1
    assert has_learned((10_247.3, 10_708.1), (10_497.9, 11_317.3)) is False  # ... and its v3: above step 0
    assert has_learned((10_247.3, 10_708.1), (9_000.0, 10_247.3)) is False  # touching is not below
    assert has_learned(None, (6_033.1, 6_848.7)) is None and has_learned((1.0, 2.0), None) is None


def test_a_model_that_has_not_learned_makes_the_claim_not_measured():
    """The first mini run on the H200: v1 learned, v3 did not; v1's lower FVD is not evidence against v3's
    architecture but against 400 steps. Not learned wins over every numeric verdict."""
    fvd = {"v3": 10_903.3, "v1": 6_465.1, "v2": 11_534.0, "v4": 10_960.0}
    learned = {"v3": False, "v1": True, "v2": False, "v4": None}
    v = judge(VARIANTS, fvd, 74.5, learned=learned)
    assert v.verdict == NOT_MEASURED and v.reason.startswith("v3; v2 have not learned")
    assert judge(VARIANTS, fvd, 74.5, learned={"v3": True, "v1": True}).verdict == FAILS  # None: judged on numbers
    not_learned = judge(VARIANTS, {**fvd, "v4": None}, 74.5, learned=learned)  # said before a missing FVD
    assert not_learned.verdict == NOT_MEASURED and "have not learned" in not_learned.reason
    missing = judge(VARIANTS, {**fvd, "v4": None}, 74.5, learned={"v3": True})
    assert missing.verdict == NOT_MEASURED and missing.reason.startswith("no FVD for v4")
