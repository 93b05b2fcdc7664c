"""One job per folder: a second job on a run, samples or report folder is one line naming the holder; a lock
left by a killed job does not block a rerun; an unwritable folder fails before any work."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import train as T
from harness.errors import UserError
from harness.lock import LOCK_NAME, folder_lock
from tests.test_train import config, make_latent_cache

UNWRITABLE = Path("/sys/matten-bench-test")  # read-only even for root (a chmod'ed folder is not, under root)


def _hold_in_child(folder: Path, what: str) -> subprocess.Popen:
    """A second process that takes the folder and keeps it until killed."""
    code = (f"from harness.lock import folder_lock; import time\n"
            f"with folder_lock({str(folder)!r}, {what!r}):\n    print('held', flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parents[1])
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_train_on_one_run_dir_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    data = make_latent_cache(tmp_path / "data")
    run = tmp_path / "run"
    child = _hold_in_child(run, "train")
    try:
        with pytest.raises(UserError, match=rf"{run} is in use by another job \(train, pid {child.pid} on "):
            T.train(config(data, run, steps=2))
        assert not (run / "checkpoints").exists()  # nothing was done
    finally:
        os.kill(child.pid, signal.SIGKILL)  # a killed job: its lock file stays, its lock does not
        child.wait()
    assert (run / LOCK_NAME).exists()
    T.train(config(data, run, steps=2))
    assert T.latest_checkpoint(run).name == "step-0000002.pt"


def test_the_same_folder_twice_in_one_process_is_refused(tmp_path):
    with folder_lock(tmp_path, "first"):
        with pytest.raises(UserError, match=r"in use by another job \(first, pid"):
            with folder_lock(tmp_path, "second"):
                pass
    with folder_lock(tmp_path, "again"):  # released at the end of the block
        pass


def test_a_second_run_on_one_folder_is_refused_on_the_command_line(tmp_path):
    child = _hold_in_child(tmp_path / "runs", "run")
    try:
        start = time.time()
        out = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--table", "params", "--scale", "smoke",
                              "--run-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")],
                             capture_output=True, text=True)
        assert out.returncode == 2 and out.stderr.startswith(f"error: {tmp_path / 'runs'} is in use by another job")
        assert len(out.stderr.strip().splitlines()) == 1 and time.time() - start < 60
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()


def _cannot_create(path: Path) -> bool:
    try:
        path.mkdir(parents=True)
    except OSError:
        return True
    path.rmdir()
    return False


@pytest.mark.skipif(not _cannot_create(UNWRITABLE), reason="/sys takes new folders on this machine")
def test_unwritable_output_folders_fail_before_any_work(tmp_path):
    data = make_latent_cache(tmp_path / "data")
    with pytest.raises(UserError, match=rf"cannot write to {UNWRITABLE}/run: "):
        T.train(config(data, UNWRITABLE / "run", steps=2))
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--table", "params", "--scale", "smoke",
                          "--run-dir", str(UNWRITABLE / "runs")], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith(f"error: cannot write to {UNWRITABLE}/runs: ")
    out = subprocess.run([sys.executable, "-m", "harness.cli", "prepare", "synthetic", "--out", str(UNWRITABLE / "p")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith(f"error: cannot write to {UNWRITABLE}/p: ")


def test_a_real_statistics_entry_being_written_is_held(tmp_path, monkeypatch):
    """Two FVD jobs on the same real clips: the second meets the first's lock on the cache entry."""
    from fvd_helpers import StandInDetector, moving_square_clips

    from harness.clip_shards import write_shard
    from harness.config import FVDConfig
    from harness.data.prepare import prepare_dataset
    from harness.data.synthetic import generate_synthetic
    from harness.fvd import weights
    from harness.fvd.protocol import compute_fvd

    monkeypatch.setenv("MATTEN_BENCH_CACHE", str(tmp_path / "cache"))
    detector = {"kind": "stand-in", "sha256": "0" * 64}
    monkeypatch.setattr(weights, "load_i3d", lambda path=None, device="cpu": (StandInDetector(), detector))
    source = generate_synthetic(tmp_path / "raw", num_classes=2, videos_per_class=2, frames=24, width=32, height=32,
                                fps=8, seed=0)
    prepare_dataset("synthetic", source, tmp_path / "prep", num_frames=9, frame_interval=1, progress=False)
    write_shard(tmp_path / "samples", 0, moving_square_clips(4, seed=0, motion="glide", frames=9, size=32))
    cfg = FVDConfig(real=str(tmp_path / "prep"), fake=str(tmp_path / "samples"), num=4, num_frames=9,
                    frame_interval=1, size=32, device="cpu", bootstrap=0)
    entry = Path(compute_fvd(cfg)["real"]["real_stats"])
    entry.unlink()  # as if never cached: the next job computes it again ...
    code = (f"from harness.lock import entry_lock; import time\n"
            f"with entry_lock({str(entry)!r}, 'FVD real statistics'):\n    print('held', flush=True); time.sleep(600)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parents[1])
    try:
        assert child.stdout.readline().strip() == "held"  # ... while another job is writing it
        held = rf"{entry} is in use by another job \(FVD real statistics, pid {child.pid}"
        with pytest.raises(UserError, match=held):
            compute_fvd(cfg)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert compute_fvd(cfg)["real"]["cached"] is False  # the holder is gone: computed and cached again
    assert entry.exists()


def test_a_forked_child_does_not_keep_the_lock(tmp_path):
    """A DataLoader worker is a fork: it must not keep the folder locked once its parent lets go (or is killed)."""
    ready, tell = os.pipe()
    with folder_lock(tmp_path, "train"):
        pid = os.fork()
        if pid == 0:  # the child: outlives the parent's block, as a worker outlives a SIGKILLed trainer
            os.write(tell, b"started")  # the fork hooks have run
            time.sleep(3)
            os._exit(0)
        assert os.read(ready, 7) == b"started"
    try:
        with folder_lock(tmp_path, "rerun"):  # at once, while the child still lives
            assert os.waitpid(pid, os.WNOHANG) == (0, 0)
    finally:
        os.waitpid(pid, 0)
        os.close(ready), os.close(tell)


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(UserError, match=rf"^{tmp_path / 'out'} is a file, not a folder"):
        with folder_lock(tmp_path / "out", "sample"):
            pass
    out = subprocess.run([sys.executable, "-m", "harness.cli", "prepare", "synthetic", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True)
    want = f"error: {tmp_path / 'out'} is a file, not a folder (choose a folder for the output)"
    assert out.returncode == 2 and out.stderr.strip() == want


def test_a_folder_that_no_longer_takes_new_files_is_refused_though_its_lock_file_opens(tmp_path):
    """A report folder from an earlier run (its lock file there) made read-only: one line before any work,
    not a PermissionError halfway through the report."""
    folder = tmp_path / "report"
    with folder_lock(folder, "report"):
        pass
    assert (folder / LOCK_NAME).exists()
    folder.chmod(0o555)
    frozen = False
    try:
        if os.access(folder, os.W_OK):  # root ignores modes: try the immutable attribute instead
            frozen = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
            if not frozen:
                pytest.skip("running as root on a filesystem without chattr: cannot make a folder unwritable")
        with pytest.raises(UserError, match=f"cannot write to {folder}"), folder_lock(folder, "report"):
            pass
    finally:
        if frozen:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)
