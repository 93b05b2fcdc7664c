"""`python -m harness.cli ...` (what torchrun launches)."""

from harness.cli import main

main()
