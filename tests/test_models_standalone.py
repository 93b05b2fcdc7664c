"""`models/` depends on torch and einops only: it imports, builds, runs and refuses bad options in a process
where the harness and every one of its own dependencies are unimportable."""

import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKED = ("harness", "typer", "rich", "pandas", "scipy", "decord", "av", "fvcore", "diffusers", "matplotlib",
           "click", "thop")


def test_import_models_without_the_harness_or_its_dependencies():
    code = textwrap.dedent(f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError("blocked: " + name)

        sys.meta_path.insert(0, Block())
        import torch
        import models
        from models.errors import ModelConfigError
        from models.scan import set_backend

        model = models.build_model("matten", "tiny", variant=3, patch=8, input_size=32, in_channels=3)
        out = model(torch.randn(1, 16, 3, 32, 32), torch.tensor([500]))
        assert out.shape == (1, 16, 6, 32, 32), out.shape  # learned sigma: 2C channels
        for bad in (lambda: models.build_model("matten", "xxl"), lambda: set_backend("cudnn")):
            try:
                bad()
            except ModelConfigError as e:
                assert isinstance(e, ValueError)
            else:
                raise AssertionError("no error")
        assert not [m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}]
        print("ok")
    """)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
