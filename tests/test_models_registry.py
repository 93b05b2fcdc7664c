"""The registry: Latte's public parameter counts exactly, Matten's within 1% of the paper, variants matched within
5%, the JSON schema of `matten-bench models --json`, and readable errors for bad choices."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from harness.cli import app
from models import build_model, list_models
from models.errors import ModelConfigError
from models.registry import MATTEN_DEPTH, ModelSpec, count_params_meta, matched_depth

# Latte's public code (Vchitect/Latte models/latte.py) at 16×4×32×32, trainable (its sin-cos tables are frozen)
LATTE_PUBLIC = {"s": 32_480_672, "b": 129_547_040, "l": 456_815_648, "xl": 673_681_568}


@pytest.mark.parametrize("size", ["s", "b", "l", "xl"])
def test_latte_params_equal_public_code(size):
    assert count_params_meta("latte", size) == LATTE_PUBLIC[size]


def test_latte_xl_class_conditional_params():
    assert count_params_meta("latte", "xl", num_classes=101) == 673_799_072  # 101 classes + the null class


def test_sincos_tables_are_buffers_not_parameters():
    model = build_model("latte", "tiny", num_frames=4, input_size=8)
    names = {n for n, _ in model.named_parameters()}
    assert "pos_embed" not in names and "temp_embed" not in names
    assert {"pos_embed", "temp_embed"} <= {n for n, _ in model.named_buffers()}


@pytest.mark.parametrize("size,paper", [("b", 164e6), ("l", 579e6), ("xl", 853e6)])
def test_matten_variant3_within_one_percent_of_paper(size, paper):
    assert abs(count_params_meta("matten", size, variant=3) / paper - 1) < 0.01


def test_matten_s_deviation_is_shown_not_hidden():
    from harness.baselines import with_paper_params

    row = next(r for r in with_paper_params(list_models()) if r["name"] == "matten-s-v3")
    assert row["paper_params"] == 35_000_000
    assert 0.15 < row["deviation"] < 0.20  # ≈ 41.4M against the paper's 35M (baselines/model_sizes.csv)


def test_variant_depths_match_variant3_within_five_percent():
    rows = list_models(include_tiny=True)
    for r in rows:
        if r["family"] == "matten":
            assert abs(r["vs_variant3"]) <= 0.05, r["name"]
            assert r["layers"] == MATTEN_DEPTH[r["variant"]][r["size"]]


def test_depth_table_is_the_best_match():
    for size in ("s", "xl"):
        for variant in (1, 2, 4):
            assert MATTEN_DEPTH[variant][size] == matched_depth(variant, size)


def test_models_json_schema():
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 4 * 5  # S, B, L, XL × (Latte, Matten v1-v4); tiny excluded
    for r in rows:
        assert {"name", "family", "variant", "size", "layers", "hidden", "params"} <= set(r)
        assert r["family"] in ("matten", "latte")
        assert r["size"] in ("s", "b", "l", "xl")
        assert isinstance(r["params"], int) and isinstance(r["layers"], int) and isinstance(r["hidden"], int)
        assert (r["variant"] is None) == (r["family"] == "latte")
    assert {r["name"] for r in rows} >= {"latte-xl", "matten-xl-v3"}


def test_models_table_lists_depths():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "23 × (T-attn, G-mamba)" in result.output


def test_models_table_is_readable_at_80_columns(monkeypatch):
    from rich.console import Console

    import harness.cli.models as cli_models

    narrow = Console(width=80, force_terminal=False)
    monkeypatch.setattr(cli_models, "console", narrow)
    with narrow.capture() as captured:
        cli_models.models_cmd(as_json=False, include_tiny=False)
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= 80
    row = next(line for line in lines if line.lstrip().startswith("Matten-XL/2 v3"))
    assert row.split()[-4:] == ["853.8", "853.0", "+0.1%", "+0.0%"]  # numbers whole, never folded


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"family": "dit", "size": "xl"}, "unknown model family"),
        ({"family": "matten", "size": "xxl"}, "unknown model size"),
        ({"family": "matten", "size": "s", "variant": 5}, "variant"),
        ({"family": "matten", "size": "s", "conditioning": "film"}, "conditioning"),
        ({"family": "matten", "size": "s", "patch": 3}, "patch"),
        ({"family": "matten", "size": "s", "variant": 3, "depth": 4}, "multiple"),
    ],
)
def test_bad_choices_are_model_config_errors(kwargs, match):
    with pytest.raises(ModelConfigError, match=match):
        build_model(**kwargs)


def test_cli_bad_option_exits_2():
    res = subprocess.run([sys.executable, "-m", "harness.cli", "bench", "models", "--device", "tpu"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "error:" in res.stderr


def test_model_spec_is_the_one_name():
    """Every public model has one name that parses back to it, a report label and its run folders' key."""
    from models.registry import ModelSpec, all_specs

    specs = all_specs(include_tiny=True)
    assert len({s.name for s in specs}) == len(specs) == 25
    assert all(ModelSpec.parse(s.name) == s for s in specs)
    # what the tool prints parses back to the same model (a label copied into --model counts that model)
    assert all(ModelSpec.parse(s.label(patch=2)) == s and ModelSpec.parse(s.label()) == s for s in specs)
    assert ModelSpec.parse("Matten-S/2 v3, condition tokens") == ModelSpec("matten", "s", 3, "tokens")
    spec = ModelSpec.parse("Matten-XL/2")  # the paper's spelling: variant 3, M-AdaN
    assert (spec.name, spec.key, spec.label(), spec.label(patch=2)) == (
        "matten-xl-v3", "matten-xl-v3-madan", "Matten-XL v3", "Matten-XL/2 v3")
    tokens = ModelSpec.parse("matten-s-v3-tokens")
    assert (tokens.key, tokens.label()) == ("matten-s-v3-tokens", "Matten-S v3, condition tokens")
    latte = ModelSpec.parse("latte-b")
    assert (latte.name, latte.key, latte.label(patch=2), latte.variant) == ("latte-b", "latte-b", "Latte-B/2", None)
    for bad, hint in (("mattn-xl", "did you mean 'matten-xl'"), ("matten-xxl", "unknown model"),
                      ("matten-xl-v5", "unknown model"), ("latte-xl-v2", "unknown model"), ("gpt", "unknown model"),
                      ("matten-xl/banana", "unknown model"), ("latte-xl-v3", "unknown model")):
        with pytest.raises(ModelConfigError, match=hint):
            ModelSpec.parse(bad)
    with pytest.raises(ModelConfigError, match="variant"):
        ModelSpec("matten", "s", 7)
    with pytest.raises(ModelConfigError, match="integer"):
        ModelSpec("matten", "s", True)
    assert ModelSpec("matten", "tiny", 2).build(patch=8, input_size=32, in_channels=3).variant == 2


def test_size_labels_are_the_registrys():
    """The scaling figure's curves and the tables' rows name a model by family and size through ModelSpec."""
    from harness.tables import size_label

    assert ModelSpec("matten", "s").size_label == "Matten-S" and ModelSpec("latte", "xl").size_label == "Latte-XL"
    assert size_label({"family": "matten", "size": "b"}) == "Matten-B" == ModelSpec("matten", "b", 2).size_label
    assert ModelSpec("matten", "xl").label(patch=2) == "Matten-XL/2 v3"  # the full label starts with it
