"""``cases.jsonl``: the cases an evaluation has scored so far, so a killed one can resume.

The first line records what the evaluation is (its settings, checkpoint, data,
split: everything but the device); each further line is one scored case, an
:meth:`canet.metrics.summary.MetricAccumulator.entry`, appended and flushed to
disk as soon as the case is done. Resuming with the same settings counts those
cases again without predicting them; resuming with other settings is refused in
one line. A line cut short by a kill is ignored (that case is done again). The
journal stays beside ``metrics.csv`` and ``summary.json`` when the evaluation
is done, so resuming a finished evaluation predicts nothing and writes the same
results again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from canet.errors import CanetError
from canet.io import atomic_write_text, writing_to

JOURNAL_FILE = "cases.jsonl"


def _differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The keys whose values differ, one level into nested mappings (``extra.checkpoint_sha256``)."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(key)
    return out


def read_journal(path: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """A journal file's header (None when unreadable) and its entries by case id.

    A line cut short by a kill is left out (that case is predicted again).

    Raises:
        OSError, UnicodeDecodeError: the file cannot be read as UTF-8 text.
        KeyError, TypeError: an entry without ``row.case`` (no journal canet wrote).
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        header = None
    entries: dict[str, dict[str, Any]] = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        entries[str(entry["row"]["case"])] = entry
    return header, entries


class CaseJournal:
    """The journal of one evaluation folder.

    Args:
        folder: the evaluation's output folder.
        header: what identifies the evaluation (JSON-able; compared on resume).
    """

    def __init__(self, folder: str | os.PathLike[str], header: dict[str, Any]) -> None:
        self.path = Path(folder) / JOURNAL_FILE
        self.header = json.loads(json.dumps(header))
        self._fh: IO[str] | None = None

    def open(self, resume: bool) -> dict[str, dict[str, Any]]:
        """Start the journal; with ``resume``, return the entries of a journal left by a killed run.

        Raises:
            CanetError: the journal on disk was written with other settings.
        """
        entries: dict[str, dict[str, Any]] = {}
        if resume and self.path.is_file():
            saved, entries = read_journal(self.path)
            if saved is not None and saved != self.header:
                changed = _differences(saved, self.header)
                raise CanetError(
                    f"{self.path} is from an evaluation with other settings ({', '.join(changed)} differ); "
                    "delete it or evaluate into another --out"
                )
        # Rewritten atomically (a kill now keeps the old journal), then appended to.
        text = "".join(json.dumps(obj) + "\n" for obj in (self.header, *entries.values()))
        atomic_write_text(self.path, text)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        return entries

    def add(self, entry: dict[str, Any]) -> None:
        """Append one scored case (flushed and synced before returning)."""
        self._write(entry)

    def _write(self, obj: dict[str, Any]) -> None:
        assert self._fh is not None, "open() the journal first"
        with writing_to(self.path):
            self._fh.write(json.dumps(obj) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file (it stays on disk: a finished evaluation resumes without predicting)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
