"""nox sessions. Torch is pinned (CPU build here); GPU users override with MATTEN_BENCH_TORCH.

    nox -s tests       the test suite (slow tests excluded; `nox -s slow` runs them)
    nox -s lint        ruff
    nox -s reproduce   the whole pipeline at smoke scale on CPU, ending in a Markdown report
    nox -s bench       the benchmark commands (results go into results/benchmarks.md by hand, with the device)
"""

import os

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

TORCH = os.environ.get("MATTEN_BENCH_TORCH", "torch==2.13.0")


def install(session: nox.Session, extras: str = "dev") -> None:
    session.install(TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    install(session)
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session
def slow(session: nox.Session) -> None:
    install(session)
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def reproduce(session: nox.Session) -> None:
    install(session)
    # smoke-scale data: 4 classes x 6 videos, 64x64, 48 frames (real mp4 files); prepare prints the summary
    session.run("matten-bench", "prepare", "synthetic", "--out", "runs/smoke/data", "--classes", "4",
                "--videos-per-class", "6", "--frames", "48", "--width", "64", "--height", "64", "--seed", "0")


@nox.session
def bench(session: nox.Session) -> None:
    install(session)
    session.run("matten-bench", "bench", "data", *session.posargs)
