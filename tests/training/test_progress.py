"""canet.training.progress: the run lock, the heartbeat, the run clock, wall-time checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canet.errors import ConfigError
from canet.training import progress as pg
from canet.training.progress import (
    STALL_FACTOR,
    STALL_MIN_STEPS,
    WARMUP_STEPS,
    Heartbeat,
    RunClock,
    RunLock,
    RunLockedError,
    WallTimer,
)
from canet.training.trainer import Hook, Trainer


def test_lock_refuses_a_second_holder_and_is_free_once_released(tmp_path: Path) -> None:
    first = RunLock(tmp_path / "run" / ".lock").acquire()
    with pytest.raises(RunLockedError, match=r"run folder .*run is already being trained by another process \(pid \d+\)"):
        RunLock(tmp_path / "run" / ".lock").acquire()
    first.release()
    with RunLock(tmp_path / "run" / ".lock"):
        pass


def test_heartbeat_overwrites_in_place(tmp_path: Path) -> None:
    assert Heartbeat.read(tmp_path) is None
    beat = Heartbeat(tmp_path)
    beat.beat(1234)
    beat.beat(7)  # shorter number: no digits of 1234 may be left behind
    beat.close()
    assert Heartbeat.read(tmp_path) == 7


def test_clock_leaves_out_warmup_steps_of_every_session_and_counts_redone_work() -> None:
    clock = RunClock()
    clock.start_session(0, None)
    for seconds in (100.0, 50.0, 2.0, 4.0):  # the first WARMUP_STEPS (2) are left out
        clock.add_step(seconds)
    assert WARMUP_STEPS == 2
    assert clock.timed_steps == 2 and clock.sec_per_it == pytest.approx(3.0)
    saved = json.loads(json.dumps(clock.to_dict()))  # what a checkpoint carries

    # Killed at iteration 9 after a checkpoint at 4: resumed from 4, 5 iterations redone.
    again = RunClock.from_dict(saved)
    again.start_session(4, reached_before=9)
    for seconds in (90.0, 80.0, 6.0):
        again.add_step(seconds)
    assert again.timed_steps == 3 and again.sec_per_it == pytest.approx((2 + 4 + 6) / 3)
    assert again.restarts == 1 and again.redone == 5
    report = again.report(iteration=7, total=10, status="running")
    assert report["redone_iterations"] == 5 and report["restarts"] == 1
    assert report["projected_total_hours"] == pytest.approx(10 * 4.0 / 3600)
    assert [s["start_iteration"] for s in report["sessions"]] == [0, 4]


def test_wall_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(pg.time, "monotonic", lambda: now[0])
    timer = WallTimer(minutes=10)
    now[0] += 599
    assert not timer.due()
    now[0] += 1
    assert timer.due()
    timer.reset()
    assert not timer.due()
    assert not WallTimer(minutes=0).due()


def test_stale_temporaries_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "last.pt").write_bytes(b"whole")
    removed = pg.remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".last.pt.abc123.tmp"]
    assert (tmp_path / "last.pt").read_bytes() == b"whole"


class _Checkpoints(Hook):
    def __init__(self) -> None:
        self.at: list[int] = []

    def on_checkpoint(self, trainer, iteration, path) -> None:
        self.at.append(iteration)


@pytest.mark.parametrize(("minutes", "expected"), [(0.0, [3]), (1e-9, [1, 2, 3])])
def test_checkpoint_minutes_adds_wall_time_checkpoints(make_config, tmp_path, minutes, expected) -> None:
    cfg = make_config(iterations=3, train__checkpoint_every=100, train__checkpoint_minutes=minutes)
    hook = _Checkpoints()
    Trainer(cfg, tmp_path / "run", quiet=True, hooks=[hook], log=lambda _m: None).run()
    assert hook.at == expected
    progress = json.loads((tmp_path / "run" / pg.PROGRESS_FILE).read_text())
    assert progress["status"] == "finished" and progress["iteration"] == 3
    assert Heartbeat.read(tmp_path / "run") == 3


def test_negative_checkpoint_minutes_is_refused(make_config) -> None:
    with pytest.raises(ConfigError, match="checkpoint_minutes must be >= 0, got -1"):
        make_config(train__checkpoint_minutes=-1)


def test_a_failed_setup_lets_go_of_the_lock(make_config, tmp_path: Path) -> None:
    run = tmp_path / "run"
    bad = make_config(data__root=str(tmp_path / "no_such_data"))
    first = Trainer(bad, run, quiet=True, log=lambda _m: None)  # kept alive: its lock would stay open
    with pytest.raises(Exception, match="no_such_data"):
        first.run()
    # The same process trains the folder next; a held lock would refuse it.
    Trainer(make_config(), run, quiet=True, log=lambda _m: None).run()
    assert (run / "checkpoints" / "last.pt").is_file()


def test_a_single_stalled_step_is_counted_apart_but_a_lasting_slowdown_is_speed() -> None:
    clock = RunClock()
    clock.start_session(0, None)
    for seconds in (60.0, 60.0, *([2.0] * STALL_MIN_STEPS)):  # warm-up, then 5 steps of 2 s
        clock.add_step(seconds)
    assert clock.sec_per_it == pytest.approx(2.0)
    clock.add_step(STALL_FACTOR * 2.0)  # exactly 10x the mean: still a step
    assert clock.stalled_steps == 0 and clock.timed_steps == STALL_MIN_STEPS + 1
    mean = clock.sec_per_it
    clock.add_step(361.0)  # paused with SIGSTOP for 6 minutes in the middle of a step
    assert clock.stalled_steps == 1 and clock.stalled_seconds == pytest.approx(361.0)
    assert clock.sec_per_it == pytest.approx(mean)  # the pause is not training speed
    clock.add_step(2.0)
    # A slowdown that lasts: its first step is taken for a stall, the next ones count.
    clock.add_step(400.0)
    clock.add_step(400.0)
    assert clock.stalled_steps == 2 and clock.timed_steps == STALL_MIN_STEPS + 3
    assert clock.sec_per_it == pytest.approx((5 * 2.0 + 20.0 + 2.0 + 400.0) / 8)
    # The counts travel in checkpoints and show in progress.json.
    again = RunClock.from_dict(json.loads(json.dumps(clock.to_dict())))
    assert (again.stalled_steps, again.stalled_seconds) == (2, pytest.approx(761.0))
    report = again.report(iteration=12, total=20, status="running")
    assert report["stalled_steps"] == 2 and report["stalled_seconds"] == pytest.approx(761.0)
    # An older checkpoint's clock (no stall keys) loads with none.
    assert RunClock.from_dict({"step_seconds": 4.0, "timed_steps": 2, "sessions": []}).stalled_steps == 0
