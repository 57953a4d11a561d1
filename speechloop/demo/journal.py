"""What a run of the story has done, so that the next run reuses it and says so.

The journal is one JSON file: step name -> when it finished and what it produced (a
retraining's result, the answers before the loop ran). Steps that change the registry
once (a retraining, a rollback) are recorded here and not repeated; a step that failed
is not recorded, so the next run does it again. Written atomically (temporary file,
then rename), so a killed run leaves the previous journal whole.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from speechloop.errors import IntegrityError


class Journal:
    """Finished steps of the story in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._steps: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise IntegrityError(
                f"demo journal {self.path} is not JSON ({exc}): delete it to start over"
            ) from exc
        steps = data.get("steps") if isinstance(data, dict) else None
        if not isinstance(steps, dict):
            raise IntegrityError(f"demo journal {self.path} has no 'steps': delete it")
        return steps

    def done(self, step: str) -> dict[str, Any] | None:
        """The record of ``step`` if an earlier run finished it."""
        return self._steps.get(step)

    def when(self, step: str) -> str:
        """When ``step`` finished (empty if it did not)."""
        record = self._steps.get(step)
        return str(record.get("at", "")) if record else ""

    def record(self, step: str, data: dict[str, Any]) -> dict[str, Any]:
        """Record ``step`` as finished with ``data``; the record."""
        entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **data}
        self._steps[step] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"steps": self._steps}, indent=1, default=str) + "\n")
        tmp.replace(self.path)
        return entry

    @property
    def empty(self) -> bool:
        """No step finished yet."""
        return not self._steps
