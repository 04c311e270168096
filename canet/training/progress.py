"""How far a run has come, how fast, and who is training it: lock, heartbeat, clock.

A long run on a shared machine is killed sooner or later (SIGKILL, a closed
terminal, a reboot) and resumed with the same command. Three small pieces make
that safe and measurable:

- :class:`RunLock`: ``<run>/.lock``, an exclusive ``flock`` held by the process
  that trains the folder. A second process is refused in one line; the kernel
  drops the lock when its holder dies, so a killed run never leaves it stuck.
- :class:`Heartbeat`: ``<run>/reached``, the last iteration completed, rewritten
  in place after every step (no fsync: it only has to survive the process, not
  the machine). On resume, ``reached - checkpoint iteration`` is the work redone.
- :class:`RunClock`: steady-state training time (step seconds without start-up,
  validation and checkpoint writes) and the run's sessions (each start or
  resume, with the iterations it redid). It travels in every checkpoint, so the
  counts survive kills, and is mirrored to ``<run>/progress.json`` (atomically)
  at every checkpoint for whatever watches the run
  (``benchmarks/protocol_run.py`` builds its result file from it).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from canet.errors import ConfigError
from canet.io import atomic_write_text, make_folder

LOCK_FILE = ".lock"
HEARTBEAT_FILE = "reached"
PROGRESS_FILE = "progress.json"
# Steps of each session left out of the steady-state time: the first one
# compiles (torch.compile) and allocates, the second still settles caches.
WARMUP_STEPS = 2
# A timed step longer than STALL_FACTOR times the mean so far (once STALL_MIN_STEPS
# are timed) is a stall, not training speed: the process was stopped (SIGSTOP,
# a suspended VM) while the step ran. It is counted apart, unless the step before
# was one too: a lasting slowdown is real speed and is let in from its second step.
STALL_FACTOR = 10.0
STALL_MIN_STEPS = 5


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunLockedError(ConfigError):
    """Another live process is training this run folder."""


class RunLock:
    """An exclusive lock on ``path`` that dies with its process.

    ``acquire`` raises :class:`RunLockedError` (one line, with the holder's pid)
    when another process holds it. Where ``fcntl`` is missing (Windows) the lock
    is a no-op.
    """

    def __init__(self, path: str | os.PathLike[str], what: str = "run folder") -> None:
        # ``what`` starts the refusal: "<what> <folder> is already being trained ..."
        self.path = Path(path)
        self.what = what
        self._fh: IO[str] | None = None

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        if self._fh is not None:
            return self
        make_folder(self.path.parent)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while held
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise RunLockedError(
                f"{self.what} {self.path.parent} is already being trained by another process (pid {holder}); "
                "wait for it to end or stop it first"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        with contextlib.suppress(OSError):
            self._fh.close()  # closing the descriptor drops the flock
        self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class Heartbeat:
    """``<run>/reached``: the last completed iteration, rewritten in place after each step."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / HEARTBEAT_FILE
        self._fd: int | None = None

    @staticmethod
    def read(run_dir: str | os.PathLike[str]) -> int | None:
        """The iteration a previous process reached (None: no heartbeat, or unreadable)."""
        try:
            return int((Path(run_dir) / HEARTBEAT_FILE).read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None

    def beat(self, iteration: int) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        # Fixed width: an overwrite never leaves digits of a longer number behind.
        os.pwrite(self._fd, f"{iteration:>12d}\n".encode("ascii"), 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class Session:
    """One process's stretch of a run."""

    started: str
    start_iteration: int
    reached_before: int | None = None  # the iteration the previous process got to (None: unknown)
    redone: int = 0  # iterations that process did after its last checkpoint, done again now


@dataclass
class RunClock:
    """Steady-state training time and the sessions of a run (saved in each checkpoint).

    ``step_seconds`` sums the wall time of the timed steps (loader wait +
    generator and discriminator steps), leaving out the first
    :data:`WARMUP_STEPS` steps of every session, everything between steps
    (validation, checkpoint writes, logging) and stalls (a single step longer
    than :data:`STALL_FACTOR` times the mean so far: counted in
    ``stalled_steps`` and ``stalled_seconds`` instead).
    """

    step_seconds: float = 0.0
    timed_steps: int = 0
    sessions: list[Session] = field(default_factory=list)
    stalled_steps: int = 0
    stalled_seconds: float = 0.0
    _session_steps: int = field(default=0, repr=False, compare=False)
    _last_stalled: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunClock:
        if not data:
            return cls()
        sessions = [Session(**s) for s in data.get("sessions", [])]
        return cls(float(data.get("step_seconds", 0.0)), int(data.get("timed_steps", 0)), sessions,
                   int(data.get("stalled_steps", 0)), float(data.get("stalled_seconds", 0.0)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_seconds": self.step_seconds,
            "timed_steps": self.timed_steps,
            "sessions": [asdict(s) for s in self.sessions],
            "stalled_steps": self.stalled_steps,
            "stalled_seconds": self.stalled_seconds,
        }

    def start_session(self, iteration: int, reached_before: int | None) -> Session:
        redone = max(0, reached_before - iteration) if reached_before is not None else 0
        session = Session(_now_iso(), iteration, reached_before, redone)
        self.sessions.append(session)
        self._session_steps = 0
        self._last_stalled = False
        return session

    def add_step(self, seconds: float) -> None:
        """Count one step of ``seconds``; the session's first :data:`WARMUP_STEPS` and stalls are left out."""
        self._session_steps += 1
        if self._session_steps <= WARMUP_STEPS:
            return
        spi = self.sec_per_it
        if (not self._last_stalled and spi is not None and self.timed_steps >= STALL_MIN_STEPS
                and seconds > STALL_FACTOR * spi):
            self.stalled_steps += 1
            self.stalled_seconds += seconds
            self._last_stalled = True
            return
        self._last_stalled = False
        self.step_seconds += seconds
        self.timed_steps += 1

    @property
    def sec_per_it(self) -> float | None:
        return self.step_seconds / self.timed_steps if self.timed_steps else None

    @property
    def restarts(self) -> int:
        """Sessions after the first (resumes, after a kill or not)."""
        return max(0, len(self.sessions) - 1)

    @property
    def redone(self) -> int:
        return sum(s.redone for s in self.sessions)

    def report(self, iteration: int, total: int, status: str) -> dict[str, Any]:
        """``progress.json``'s content."""
        spi = self.sec_per_it
        left = (total - iteration) * spi if spi is not None else None
        end = None
        if left is not None:
            end = (datetime.now(timezone.utc) + timedelta(seconds=left)).isoformat(timespec="seconds")
        return {
            "status": status,
            "iteration": iteration,
            "total": total,
            "sec_per_it": spi,
            "timed_steps": self.timed_steps,
            "stalled_steps": self.stalled_steps,
            "stalled_seconds": self.stalled_seconds,
            "projected_total_hours": total * spi / 3600 if spi is not None else None,
            "expected_end": end,
            "restarts": self.restarts,
            "redone_iterations": self.redone,
            "sessions": [asdict(s) for s in self.sessions],
            "updated": _now_iso(),
        }


def write_progress(run_dir: str | os.PathLike[str], report: dict[str, Any]) -> None:
    """Write ``<run>/progress.json`` atomically."""
    atomic_write_text(Path(run_dir) / PROGRESS_FILE, json.dumps(report, indent=2) + "\n")


def read_progress(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``<run>/progress.json`` (None: none yet, or unreadable)."""
    try:
        return json.loads((Path(run_dir) / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


class WallTimer:
    """Whether ``minutes`` of wall time have passed since the last :meth:`reset` (0 = never)."""

    def __init__(self, minutes: float) -> None:
        self.seconds = 60.0 * minutes
        self.reset()

    def reset(self) -> None:
        self._since = time.monotonic()

    def due(self) -> bool:
        return self.seconds > 0 and time.monotonic() - self._since >= self.seconds


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed atomic write left in ``folder`` (``.<name>.*.tmp*``).

    Call it only while holding the run's :class:`RunLock`: then no other process
    can be writing them.
    """
    removed = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    for path in root.glob(".*.tmp*"):
        if path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed
