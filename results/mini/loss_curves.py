"""The training loss of each mini model in one run's folder (the mean of each 10 steps, from the *.metrics.jsonl
there) -> loss.png in that folder. Run here: python results/mini/loss_curves.py results/mini/run4"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TITLES = {"run3": "mini run, 2026-11-30, one H200: training loss",
          "run4": "mini run 4 (under MPS), 2026-11-30, one H200: training loss",
          "run5": "mini run 5 (DDPM-50, x_0 clamped), 2026-11-30, one H200: training loss"}

here = Path(sys.argv[1])
fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
for f in sorted(here.glob("*.metrics.jsonl")):
    rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=f.name.split(".")[0].replace("-synthetic", ""),
            lw=1)
ax.set_yscale("log")
ax.set_xlabel("training step")
ax.set_ylabel("loss (mse + vb), mean of 10 steps")
ax.set_title(TITLES.get(here.name, f"mini {here.name}: training loss"))
ax.legend(fontsize=7)
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(here / "loss.png")
