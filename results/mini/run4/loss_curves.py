"""The training loss of each mini model (the mean of each 10 steps, from its metrics.jsonl) -> loss.png.
Run here: python results/mini/run4/loss_curves.py"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).parent
fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
for f in sorted(here.glob("*.metrics.jsonl")):
    rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r]
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=f.name.split(".")[0].replace("-synthetic", ""),
            lw=1)
ax.set_yscale("log")
ax.set_xlabel("training step")
ax.set_ylabel("loss (mse + vb), mean of 10 steps")
ax.set_title("mini run 4 (under MPS), 2026-11-30, one H200: training loss")
ax.legend(fontsize=7)
ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(here / "loss.png")
