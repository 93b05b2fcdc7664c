# probe (trainer issue): where the Latte-S/8 loop loses time. argv[1]: "empty" = each sample's noise is zeros
# (the same bytes shipped, no CPU generator drawn), anything else = as committed; the rest is a matten-bench command
import sys

import torch

import harness.train as T

mode = sys.argv.pop(1)
orig = T.draw_t_and_noise
if mode == "empty":
    def f(position, shape, seed, nt):
        t, _ = orig(position, (1,), seed, nt)
        return t, torch.zeros(shape)
    T.draw_t_and_noise = f
from harness.cli import main  # noqa: E402

sys.argv = ["matten-bench"] + sys.argv[1:]
main()
