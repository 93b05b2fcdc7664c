"""Stand-ins for stages not yet on this branch, honouring the contracts (and the signatures seen in
the other workstreams). Installed into sys.modules only where the real module does not import."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

import pandas as pd

PAPER_GFLOPS = {"matten-xl-v3": 4008.0, "latte-xl": 5572.0}  # by the names the FLOP stage counts


def flops_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Same columns as harness.flops.flops_table (its interface; numbers from the records)."""
    rows: dict[str, dict] = {}
    for r in records:
        row = rows.setdefault(r["model"], {"model": r["model"], "params (M)": round(r["params"] / 1e6, 1),
                                           "paper GFLOPs (as printed)": PAPER_GFLOPS.get(r["model"])})
        if r["protocol"] == "paper":
            row["paper procedure: thop GMACs, batch 3"] = round(r["fma"] / 1e9, 1)
        else:
            row["fvcore GFMA / clip"] = round(r["fma"] / r["batch"] / 1e9, 1)
    cols = ["model", "params (M)", "paper GFLOPs (as printed)", "paper procedure: thop GMACs, batch 3",
            "fvcore GFMA / clip"]
    return pd.DataFrame(list(rows.values())).reindex(columns=cols)


def flops_record(model: str, protocol: str, params: float, gfma: float) -> dict[str, Any]:
    batch = 1 if protocol == "fvcore" else 3
    return {"model": model, "protocol": protocol, "batch": batch, "params": params, "fma": gfma * 1e9,
            "paper_gflops": PAPER_GFLOPS.get(model),
            "by_category": {"attention products": 0, "selective scan": 0}}


def ensure_flops_module(monkeypatch) -> None:
    try:
        importlib.import_module("harness.flops")
        return
    except ImportError:
        pass
    mod = types.SimpleNamespace(flops_table=flops_table, PAPER_GFLOPS=PAPER_GFLOPS, TABLE_EXPLANATION="(stand-in)")
    monkeypatch.setitem(sys.modules, "harness.flops", mod)
