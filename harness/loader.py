"""Training batches made by threads of the training process, for a dataset already in memory (a latent cache),
when asked (``--loader threads``) or, with ``--loader auto``, off CUDA (harness.train.loader_kind).

A latent cache needs no decoding, so a batch is an index into memory plus each sample's noise and timestep:
threads make it without any process boundary (``torch.randn`` and the copies release the interpreter lock while
they run), where torch's DataLoader workers hand every batch to the main process through shared-memory file
descriptors and pickling, work that runs in the main process's interpreter beside the training loop's kernel
launches. On a GPU that trade went against the threads. Measured on one H200 with Latte-S/8 at the mini shape
(batch 64, 4 workers), whose step is bound by the host (enqueueing its kernels takes as long as the step), so
that any Python beside it lengthens it (results/benchmarks-history.md):

- eager (eighth session, three runs each, alternating): threads a median 0.81 of the pure step, processes 0.76
  (0.69-1.02 and 0.75-0.98): not told apart;
- compiled (ninth session, medians of 3-5 alternating pairs): threads 0.71-0.72 in two runs, processes 0.85-0.90
  in three. So on CUDA ``auto`` takes DataLoader's processes. Decoding videos is always theirs.

The batches are the DataLoader's bit for bit: the same keys (harness.train.batch_keys), the same items
(``TrainingSamples.__getitem__``) and the same ``collate``; tests/test_loader.py compares them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class ThreadedBatches:
    """An endless iterator of ``collate([samples[k] for k in keys])`` for each list of ``keys``, made ahead (up to
    ``depth`` batches) by a thread that spreads each batch's items over ``threads`` threads, started by the first
    ``next()``.

    ``pin``: the batch's tensors in page-locked memory, as DataLoader's ``pin_memory=True``; the producing thread
    first makes the constructing thread's CUDA device its own, as DataLoader's pinning thread does (otherwise a
    rank on GPU 1 would open a context on GPU 0). An error while making a batch is raised by the ``next()`` that
    would have returned it. :meth:`close` (or leaving a ``with`` block)
    stops the threads: the producing thread holds a reference to this object, so garbage collection never does."""

    def __init__(self, samples: Any, keys: Iterator[list], collate: Callable[[list], dict[str, Any]], threads: int,
                 pin: bool, depth: int = 4):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self._samples, self._keys, self._collate, self._pin = samples, keys, collate, pin
        self._device = torch.cuda.current_device() if pin else None
        self._threads = threads
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    def __iter__(self) -> ThreadedBatches:
        return self

    def _start(self) -> None:
        """The threads start with the first batch asked for, as DataLoader's workers start with its iterator: a
        loader made and never read (a run that fails before its loop) leaves no thread behind."""
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="batch-item")
        self._thread = threading.Thread(target=self._produce, name="batches", daemon=True)
        self._thread.start()

    def __next__(self) -> dict[str, Any]:
        if self._thread is None:
            if self._stop.is_set():
                raise StopIteration
            self._start()
        assert self._thread is not None
        while True:
            try:
                got = self._queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive():  # it ended: the keys ran out, unless it put one just before
                    try:
                        got = self._queue.get_nowait()
                        break
                    except queue.Empty:
                        raise StopIteration from None
        if isinstance(got, _Failed):
            self.close()
            raise got.error
        return got

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ThreadedBatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _produce(self) -> None:
        assert self._pool is not None
        try:
            if self._device is not None:
                torch.cuda.set_device(self._device)
            for keys in self._keys:
                if self._stop.is_set():
                    return
                batch = self._collate(list(self._pool.map(self._samples.__getitem__, keys)))
                if self._pin:
                    batch = {k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                if not self._put(batch):
                    return
        except BaseException as e:  # noqa: BLE001  (handed to the consumer, which raises it)
            self._put(_Failed(e))

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
