"""Networks: Matten (four variants), Latte, the bidirectional Mamba mixer, selective-scan backends."""

from models.registry import build_model, list_models

__all__ = ["build_model", "list_models"]
