"""harness.distributed.init_distributed: which process group each device gets (no GPU here: the collectives
themselves are covered by the two-process gloo runs in test_train.py and test_bench_ddp.py)."""

from types import SimpleNamespace

import torch
import torch.distributed as dist

from harness.distributed import Dist, init_distributed


def _fake_group(monkeypatch, rank: int, world: int) -> list[dict]:
    calls: list[dict] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: calls.append(kw))
    monkeypatch.setattr(dist, "get_rank", lambda: rank)
    monkeypatch.setattr(dist, "get_world_size", lambda: world)
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    return calls


def test_nccl_group_puts_its_kernels_on_a_high_priority_stream(monkeypatch):
    # this CPU build of torch has no ProcessGroupNCCL: a stand-in with the same Options attribute
    class Options:
        is_high_priority_stream = False

    monkeypatch.setattr(dist, "ProcessGroupNCCL", SimpleNamespace(Options=Options), raising=False)
    calls = _fake_group(monkeypatch, rank=1, world=2)
    assert init_distributed(torch.device("cuda", 1)) == Dist(rank=1, world=2, local_rank=1)
    (call,) = calls
    assert call["backend"] == "nccl" and call["pg_options"].is_high_priority_stream is True


def test_gloo_group_on_the_cpu_and_none_for_one_process(monkeypatch):
    calls = _fake_group(monkeypatch, rank=0, world=2)
    assert init_distributed(torch.device("cpu")) == Dist(rank=0, world=2, local_rank=0)
    assert calls == [{"backend": "gloo"}]
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed(torch.device("cpu")) == Dist() and len(calls) == 1
