"""Does an ordering the paper claims hold at this scale? Read against the gap between two seeds of one model.

A claim says one model has a lower FVD than others (the paper's Fig. 8a: variant 3 is the best of the
four; Fig. 8b: M-AdaN beats condition tokens; Fig. 9: the larger model is better; the Table: Matten beats
Latte). At the last evaluated step, with the seed gap g = |FVD(main model, seed 0) − FVD(main model,
seed 1)| (the main model is Matten variant 3 with M-AdaN, trained twice):

* **holds**: every other model's FVD exceeds the claimed-better one's by more than g, and their 95 %
  bootstrap intervals (where given) do not overlap;
* **does not hold**: some other model's FVD is below the claimed-better one's by more than g, with
  intervals that do not overlap;
* **cannot tell apart**: otherwise (a difference within what a second seed moves, or within the clips'
  sampling noise), or no seed gap was measured;
* **not measured**: a model in the claim has no FVD at the step judged (not trained at this scale, e.g. the
  smoke scale's XL), or has not learned (:func:`has_learned`): its FVD at the step judged is
  not below its untrained (step-0) FVD beyond both 95 % intervals. Its samples are still what the untrained
  pipeline makes, so an ordering between it and another model says nothing about the architectures (the
  first mini run on the H200 had such models: results/mini/REPORT.md).

Both tests are needed: the seed gap is one draw of training noise (it can be small by chance), the
intervals are the noise of the clips at this N (they say nothing about training).

Nothing here looks at the paper's numbers, only at the ordering it claims; a verdict is about this
scale's data and models, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

HOLDS = "holds"
FAILS = "does not hold"
UNCLEAR = "cannot tell apart"
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Claim:
    """The paper says ``better`` has a lower FVD than each of ``others`` (experiment keys)."""

    name: str
    source: str  # where the paper claims it
    better: str
    others: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str
    reason: str
    fvd: dict[str, float | None]  # key -> FVD at the step judged
    seed_gap: float | None


def judge(
    claim: Claim,
    fvd: dict[str, float | None],
    seed_gap: float | None,
    intervals: dict[str, tuple[float, float]] | None = None,
    learned: dict[str, bool | None] | None = None,
) -> Verdict:
    """The verdict on ``claim`` given each model's FVD (same step, same N), the seed gap and, optionally,
    each FVD's 95 % interval (low, high) and whether each model has learned (:func:`has_learned`; None or
    absent: not known, judged on the numbers)."""
    values = {k: fvd.get(k) for k in (claim.better, *claim.others)}
    untrained = [k for k in values if (learned or {}).get(k) is False]
    if untrained:  # first: an ordering involving an untrained model says nothing, whatever else is missing
        return Verdict(claim, NOT_MEASURED, f"{'; '.join(untrained)} {'has' if len(untrained) == 1 else 'have'} not "
                       "learned: FVD not below the untrained model's beyond both 95 % intervals", values, seed_gap)
    missing = [k for k, v in values.items() if v is None]
    if missing:
        return Verdict(claim, NOT_MEASURED, f"no FVD for {'; '.join(missing)} at this scale and step", values,
                       seed_gap)
    if seed_gap is None:
        return Verdict(claim, UNCLEAR, "no seed gap was measured (the main model was trained once)", values, seed_gap)
    intervals = intervals or {}

    def overlap(k: str) -> bool:
        a, b = intervals.get(claim.better), intervals.get(k)
        return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]

    best = values[claim.better]
    diffs = {k: values[k] - best for k in claim.others}  # > 0: the claimed-better model is lower
    beaten_by = [k for k, d in diffs.items() if d < -seed_gap and not overlap(k)]
    if beaten_by:
        worst = min(beaten_by, key=diffs.get)
        return Verdict(claim, FAILS, f"{worst} is lower by {-diffs[worst]:,.1f} > seed gap {seed_gap:,.1f}",
                       values, seed_gap)
    if all(d > seed_gap and not overlap(k) for k, d in diffs.items()):
        closest = min(diffs, key=diffs.get)
        return Verdict(claim, HOLDS, f"lower than {closest} (the closest) by {diffs[closest]:,.1f} > seed gap "
                       f"{seed_gap:,.1f}", values, seed_gap)
    within = [k for k, d in diffs.items() if abs(d) <= seed_gap]
    if within:
        k = min(within, key=lambda k: abs(diffs[k]))
        return Verdict(claim, UNCLEAR, f"{k} differs by {diffs[k]:+,.1f}, within the seed gap {seed_gap:,.1f}",
                       values, seed_gap)
    k = min((k for k in diffs if overlap(k)), key=lambda k: abs(diffs[k]))
    return Verdict(claim, UNCLEAR, f"{k} differs by {diffs[k]:+,.1f}, beyond the seed gap {seed_gap:,.1f} but within "
                   "the FVDs' overlapping 95 % intervals", values, seed_gap)


def has_learned(untrained: tuple[float, float] | None, trained: tuple[float, float] | None) -> bool | None:
    """Whether a model has learned: the 95 % interval (low, high) of its FVD at a trained step lies wholly
    below that of its untrained (step-0) FVD. None when either interval is missing (not known)."""
    if untrained is None or trained is None:
        return None
    return trained[1] < untrained[0]


def seed_gap(fvd_seed0: float | None, fvd_seed1: float | None) -> float | None:
    """|FVD(seed 0) − FVD(seed 1)| of one model at one step; None if either is missing."""
    if fvd_seed0 is None or fvd_seed1 is None:
        return None
    return abs(fvd_seed0 - fvd_seed1)
