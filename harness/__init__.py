"""matten-bench: a reproducibility harness for Matten (arXiv 2405.03025)."""

__version__ = "0.1.0"
