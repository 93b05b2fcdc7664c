"""The verdict on the paper's orderings, on made-up numbers: holds, does not hold, cannot tell apart."""

import pytest

from harness.verdict import FAILS, HOLDS, UNCLEAR, Claim, judge, seed_gap

VARIANTS = Claim("variant 3 is the best of the four", "Fig. 8a", "v3", ("v1", "v2", "v4"))


@pytest.mark.parametrize(
    "fvd,gap,verdict,reason",
    [
        ({"v3": 300, "v1": 400, "v2": 350, "v4": 331}, 30, HOLDS, "than v4 (the closest) by 31.0 > seed gap 30.0"),
        ({"v3": 300, "v1": 400, "v2": 250, "v4": 500}, 30, FAILS, "v2 is lower by 50.0 > seed gap 30.0"),
        ({"v3": 300, "v1": 400, "v2": 290, "v4": 500}, 30, UNCLEAR, "v2 differs by -10.0, within the seed gap 30.0"),
        ({"v3": 300, "v1": 400, "v2": 329, "v4": 500}, 30, UNCLEAR, "v2 differs by +29.0, within the seed gap 30.0"),
        ({"v3": 300, "v1": 400, "v2": 350, "v4": None}, 30, UNCLEAR, "no FVD for v4"),
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
