"""Each paper table declared once (harness.paper_tables): what a preset trains for it and which stages it needs."""

from __future__ import annotations

import pytest

from harness.paper_tables import PAPER_TABLES, needs
from harness.run import PRESETS, TABLES, plan_experiments


def test_the_tables_and_their_stages():
    assert TABLES == ("sota", "variants", "conditioning", "scaling", "flops", "params")  # the report's order
    assert [n for n in TABLES if needs([n], "flops")] == ["sota", "scaling", "flops"]
    assert [n for n in TABLES if needs([n], "params")] == ["scaling", "params"]
    assert [n for n in TABLES if needs([n], "train")] == ["sota", "variants", "conditioning", "scaling"]
    assert needs(["variants", "flops"], "flops") and not needs(["variants", "conditioning"], "params")
    with pytest.raises(ValueError, match="unknown stage"):
        needs(["sota"], "sample")


def test_what_the_mini_preset_trains_for_each_table():
    mini = PRESETS["mini"]
    names = {t: [e.name for e in mini.experiments(t)] for t in TABLES}
    assert names["sota"] == ["matten-s-v3-madan-synthetic", "latte-s-synthetic"]
    assert names["variants"] == [f"matten-s-v{v}-madan-synthetic" for v in (1, 2, 3, 4)] + [
        "matten-s-v3-madan-synthetic-seed1"]
    assert names["conditioning"] == ["matten-s-v3-madan-synthetic", "matten-s-v3-tokens-synthetic"]
    assert names["scaling"] == ["matten-s-v3-madan-synthetic", "matten-b-v3-madan-synthetic"]
    assert names["flops"] == names["params"] == []
    assert len(plan_experiments(mini, list(TABLES))) == 8  # shared experiments trained once
    smoke = PRESETS["smoke"]  # no scaling training at smoke: only the main size
    assert [e.size for e in smoke.experiments("scaling")] == ["tiny"]
    assert all(spec.name == name for name, spec in PAPER_TABLES.items())
