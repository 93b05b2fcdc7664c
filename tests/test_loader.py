"""harness.loader: threads make the DataLoader's batches bit for bit, the training they feed is the same, errors
reach the loop and the threads stop."""

import json
import threading

import pytest
import torch

from harness import train as T
from harness.distributed import Dist
from harness.loader import ThreadedBatches
from tests.test_train import config, final_state, make_latent_cache

NOISE_SHAPE = (2, 3, 8, 8)  # make_latent_cache's defaults: t=2, c=3, hw=8


def batches(loader, n):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), k
            else:
                assert x[k] == y[k], k


@pytest.mark.parametrize("world", [1, 2])
def test_threads_make_the_dataloaders_batches_bit_for_bit(tmp_path, world):
    """Across an epoch boundary (8 clips, global batch 2·world), from a resumed start step, on each rank."""
    data = make_latent_cache(tmp_path / "data", n=8)
    ds = T.open_dataset(config(data, tmp_path / "run"))
    for rank in range(world):
        d = Dist(rank=rank, world=world)
        procs = T.make_loader(ds, config(data, tmp_path / "run", num_workers=2, loader="processes"), d, 3,
                              NOISE_SHAPE, 1000, cuda=False, pin=False)
        threads = T.make_loader(ds, config(data, tmp_path / "run", num_workers=3, loader="threads"), d, 3,
                                NOISE_SHAPE, 1000, cuda=False, pin=False)
        assert isinstance(procs, torch.utils.data.DataLoader) and isinstance(threads, ThreadedBatches)
        with threads:
            assert_same_batches(batches(threads, 6), batches(procs, 6))


def test_auto_is_threads_for_a_latent_cache_off_cuda_and_processes_otherwise(tmp_path):
    data = make_latent_cache(tmp_path / "data")
    ds = T.open_dataset(config(data, tmp_path / "run"))
    assert T.loader_kind(ds, config(data, tmp_path / "run", num_workers=2), cuda=False) == "threads"
    assert T.loader_kind(ds, config(data, tmp_path / "run", num_workers=2, loader="processes"),
                         cuda=False) == "processes"
    assert T.loader_kind(ds, config(data, tmp_path / "run", num_workers=0), cuda=False) == "main"
    # on CUDA auto means processes (threads would share the interpreter lock with the kernel launches) ...
    assert T.loader_kind(ds, config(data, tmp_path / "run", num_workers=2), cuda=True) == "processes"
    # ... and an explicit choice stands
    assert T.loader_kind(ds, config(data, tmp_path / "run", num_workers=2, loader="threads"), cuda=True) == "threads"
    assert T.loader_kind(ds, config(data, tmp_path / "run", num_workers=0), cuda=True) == "main"
    # make_loader makes what loader_kind says (cuda=True is not tried here: no GPU to pin for, and the kind is
    # the DataLoader either way, as the processes test above makes)
    auto = config(data, tmp_path / "run", num_workers=2)
    with T.make_loader(ds, auto, Dist(), 0, NOISE_SHAPE, 1000, cuda=False, pin=False) as loader:
        assert isinstance(loader, ThreadedBatches)
    with pytest.raises(T.UserError, match="--loader threads with --num-workers 0: no threads to make the batches"):
        config(data, tmp_path / "run", num_workers=0, loader="threads")

    class Videos:  # a dataset with clip(): decoded per sample, as harness.data.clips.ClipDataset
        def clip(self, i, epoch):
            raise NotImplementedError

    assert T.loader_kind(Videos(), config(data, tmp_path / "run", num_workers=2), cuda=False) == "processes"
    with pytest.raises(T.UserError, match="--loader must be one of auto, processes, threads, not 'fork'"):
        config(data, tmp_path / "run", loader="fork")


def test_training_fed_by_threads_equals_training_fed_by_processes(tmp_path):
    """The same run, bit for bit (weights, EMA, optimizer state, every logged loss); the record names the loader."""
    data = make_latent_cache(tmp_path / "data")
    for kind in ("processes", "threads"):
        T.train(config(data, tmp_path / kind, steps=5, num_workers=2, loader=kind))
    from tests.test_train import assert_bitwise_equal

    assert_bitwise_equal(final_state(tmp_path / "threads"), final_state(tmp_path / "processes"))
    losses = {k: [json.loads(x)["loss"] for x in (tmp_path / k / "metrics.jsonl").read_text().splitlines()]
              for k in ("processes", "threads")}
    assert losses["threads"] == losses["processes"] and len(losses["threads"]) == 5
    rec = json.loads((tmp_path / "threads" / "records" / "train.json").read_text())
    assert rec["protocol"]["loader"] == {"kind": "threads", "workers": 2}
    assert not [t for t in threading.enumerate() if t.name == "batches"]  # the run stopped its threads


def test_a_run_that_fails_before_its_loop_leaves_no_thread(tmp_path):
    """The threads start with the first batch asked for (a helper's case: a damaged stage record refused after
    the loader was made used to leave its threads running for the life of the process)."""
    data = make_latent_cache(tmp_path / "data")
    run = tmp_path / "run"
    (run / "records").mkdir(parents=True)
    (run / "records" / "train.json").write_text("{cut")
    with pytest.raises(T.UserError):
        T.train(config(data, run, steps=4, num_workers=2, loader="threads"))
    assert not [t for t in threading.enumerate() if t.name == "batches" or t.name.startswith("batch-item")]
    unread = ThreadedBatches({}, iter([[0]]), dict, threads=1, pin=False)
    assert unread._thread is None
    unread.close()
    with pytest.raises(StopIteration):  # closed before it started: nothing more to give
        next(unread)


def test_an_error_making_a_batch_is_raised_by_next_and_close_stops_the_threads():
    class Samples:
        def __getitem__(self, key):
            if key == 5:
                raise OSError("disk gone at item 5")
            return {"x": torch.tensor([key])}

    def keys():
        k = 0
        while True:
            yield [k, k + 1]
            k += 2

    def collate(items):
        return {"x": torch.cat([it["x"] for it in items])}

    loader = ThreadedBatches(Samples(), keys(), collate, threads=2, pin=False, depth=1)
    assert next(loader)["x"].tolist() == [0, 1]
    assert next(loader)["x"].tolist() == [2, 3]
    with pytest.raises(OSError, match="disk gone at item 5"):
        next(loader)
    assert not loader._thread.is_alive()

    endless = ThreadedBatches(Samples(), iter([[0, 1]] * 1000), collate, threads=1, pin=False, depth=2)
    assert next(endless)["x"].tolist() == [0, 1]
    endless.close()  # its producer was blocked on a full queue
    assert not endless._thread.is_alive()

    finite = ThreadedBatches(Samples(), iter([[0, 1]]), collate, threads=1, pin=False)
    assert [b["x"].tolist() for b in finite] == [[0, 1]]  # the keys ran out: the iteration ends
    with pytest.raises(ValueError, match="threads must be at least 1"):
        ThreadedBatches(Samples(), iter([]), collate, threads=0, pin=False)
