# probe (trainer issue, 2026-11-30 seventh session; run as devtmp/p13b.py by results/mini/probe3/c1.sh): where the Latte-S/8 loop loses time. argv[1] mode: base | nopin | same (the loader's first
# batch, repeated: no workers' transfers) | same-nobar (and no progress bar) | nobar; the rest: a matten-bench command
import itertools, sys
import harness.train as T
mode = sys.argv.pop(1)
orig = T.make_loader
if mode == "nopin":
    T.make_loader = lambda *a, **k: orig(*a, **{**k, "pin": False})
if mode.startswith("same"):
    def same(*a, **k):
        first = next(iter(orig(*a, **k)))
        return itertools.repeat(first)
    T.make_loader = same
if mode.endswith("nobar"):
    T.progress = lambda: T._NoBar()
from harness.cli import main  # noqa: E402
sys.argv = ["matten-bench"] + sys.argv[1:]
main()
