"""Global torch flags a stage sets are the process's: harness.machine.tf32 sets them for one block only, and the
FVD's extractor leaves them as it found them; compile_blocks compiles in place."""

import pytest
import torch

from harness.machine import tf32


@pytest.fixture
def flags():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def state():
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("before", [(False, True), (True, False)])
def test_tf32_sets_both_flags_in_the_block_and_restores_them(flags, before):
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    for enabled in (True, False):
        with tf32(enabled):
            assert state() == (enabled, enabled)
        assert state() == before
    with pytest.raises(RuntimeError), tf32(True):  # an error inside the block restores them too
        raise RuntimeError("boom")
    assert state() == before


def test_the_fvd_extractor_sets_the_flags_for_its_pass_only(flags):
    """On CUDA the extractor runs fp32 with TF32 off (the reference numbers) and puts the flags back; the CUDA
    branch is taken here on CPU tensors by marking the extractor's device as CUDA after it is built."""
    from harness.fvd.protocol import Extractor

    seen = []

    class Tiny(torch.nn.Module):  # stands in for the I3D: (B, 3, T, 224, 224) -> (B, 400)
        def fuse_batchnorm(self):
            return self

        def forward(self, x):
            seen.append(state())
            return x.mean(dim=(1, 2, 3, 4))[:, None].repeat(1, 400)

    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, True  # as a training sets them
    extractor = Extractor(Tiny(), "cpu", "stylegan-v")
    extractor.device = torch.device("cuda")
    logits = extractor.logits(torch.full((2, 16, 32, 32, 3), 128, dtype=torch.uint8))
    assert logits.shape == (2, 400) and seen == [(False, False)] and state() == (True, True)


@pytest.mark.parametrize("before", [False, True])
def test_cudnn_benchmark_is_set_for_its_block_only(before):
    """bench fvd times with cuDNN's autotuner on and leaves the process's flag as it was (it used to keep it on)."""
    from unittest import mock

    from harness.bench import fvd as bench_fvd
    from harness.machine import cudnn_benchmark

    old = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = before
        with cudnn_benchmark(True):
            assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cudnn.benchmark is before
        seen = []
        with mock.patch.object(bench_fvd, "_bench_cuda", lambda *a: seen.append(torch.backends.cudnn.benchmark)):
            bench_fvd.bench_cuda(num=1, batch_size=1, runs=1)
        assert seen == [True] and torch.backends.cudnn.benchmark is before
    finally:
        torch.backends.cudnn.benchmark = old


def test_compile_blocks_compiles_each_block_in_place_and_keeps_the_modules():
    """Block by block where the model has blocks (Latte, Matten), the whole model otherwise; the state-dict keys
    are the eager model's (checkpoints and DDP see the same modules)."""
    import torch

    from harness.machine import compile_blocks
    from models.registry import build_model

    model = build_model("latte", "tiny", patch=2, in_channels=3, input_size=8, num_frames=2)
    keys = list(model.state_dict())
    assert compile_blocks(model) == "4 blocks"
    assert list(model.state_dict()) == keys
    assert all(b._compiled_call_impl is not None for b in model.blocks)
    assert compile_blocks(torch.nn.Linear(2, 2)) == "the model"


def test_mps_is_seen_by_its_control_pipe(tmp_path, monkeypatch):
    from harness.machine import mps_running

    assert not mps_running(str(tmp_path))
    (tmp_path / "control").write_text("")  # the daemon's named pipe; its existence is what is checked
    assert mps_running(str(tmp_path))
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert mps_running()


def test_the_machine_record_names_the_cpu_and_the_isa_torch_dispatches_to(monkeypatch, tmp_path):
    """Two VMs of one image gave the smoke scale's FVDs apart by ~1e-6 in 3 of 30 (2026-12-01); the records said
    only "x86_64". They now name the model and the vector ISA of torch's CPU kernels."""
    from harness import machine

    rec = machine.machine_record("cpu")
    assert rec["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and rec["cpu_capability"]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    real_path = machine.Path
    monkeypatch.setattr(machine, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert machine.cpu_model() == "AMD EPYC 9654 96-Core Processor"
    monkeypatch.setattr(machine, "Path", lambda p: tmp_path / "none")
    assert machine.cpu_model() == ""
