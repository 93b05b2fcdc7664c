"""Networks: Matten (four variants), Latte, the bidirectional Mamba mixer, selective-scan backends.

Depends on torch and einops only (mamba-ssm when present). A bad option raises ``ModelConfigError`` (a
ValueError); messages go to the ``models`` logger. ``build_model`` and ``list_models`` are imported on first
use, so ``from models.errors import ModelConfigError`` does not import torch.
"""

from models.errors import ModelConfigError

__all__ = ["ModelConfigError", "build_model", "list_models"]


def __getattr__(name: str):
    if name in ("build_model", "list_models"):
        from models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
