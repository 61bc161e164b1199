"""Where a catalyst run keeps its history: a study in llmbo's storage.

A run is a study (``direction`` from the task's metric) whose attributes hold the settings
(``catalyst.settings``), one attribute per event (``catalyst.event.000001``...: epoch ends,
shown candidates with their scores, mentor requests and replies, proposals, restarts,
fallbacks to gradients alone) and the latest checkpoint (``catalyst.checkpoint``: soft
prompt, head and optimiser state, the best state so far, at an epoch end). Reopening the
study with the same settings resumes after the checkpoint's epoch; with other settings it
is refused (:class:`~llmbo.errors.StudySettingsError`).
"""

from __future__ import annotations

import base64
import datetime
import io
import json
from typing import Any

import torch

from llmbo.errors import StudyError, StudySettingsError
from llmbo.storage import BaseStorage, get_storage

__all__ = ["CatalystRecord"]

PREFIX = "catalyst."
EVENT = PREFIX + "event."


def _encode(state: Any) -> str:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decode(text: str) -> Any:
    return torch.load(io.BytesIO(base64.b64decode(text)), weights_only=False)


class CatalystRecord:
    """The stored history of one catalyst run.

    Args:
        storage: A path, SQLAlchemy URL or storage (default: in memory).
        name: Study name.
        settings: What the run's numbers depend on (JSON-serialisable).
        maximize: Whether the task's metric is maximised.
    """

    def __init__(
        self, storage: Any, name: str, settings: dict[str, Any], *, maximize: bool
    ) -> None:
        self.storage: BaseStorage = get_storage(
            storage if storage is not None else "sqlite:///:memory:"
        )
        wanted = json.loads(json.dumps(settings, default=str))
        try:
            record = self.storage.load_study(name)
        except StudyError:
            record = self.storage.create_study(
                name,
                space={"kind": "catalyst"},
                config={"name": "catalyst"},
                seed=int(settings.get("config", {}).get("seed", 0)),
                direction="maximize" if maximize else "minimize",
            )
            self.storage.set_attr(record.study_id, PREFIX + "settings", wanted)
        self.study_id = record.study_id
        self.name = name
        attrs = self.storage.get_attrs(self.study_id)
        stored = attrs.get(PREFIX + "settings")
        if stored is None:
            raise StudySettingsError(
                f"Study {name!r} exists and is not a catalyst run; choose another study name."
            )
        if stored != wanted:
            diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise StudySettingsError(
                f"Catalyst run {name!r} was made with other {', '.join(diff)}; its history "
                "would not continue this run. Use the same settings or another study name."
            )
        self._count = sum(1 for k in attrs if k.startswith(EVENT))

    @classmethod
    def open(cls, storage: Any, name: str) -> CatalystRecord:
        """The stored run ``name``, read-only, for inspection (its own settings)."""
        store = get_storage(storage, readonly=True)
        record = store.load_study(name)
        settings = store.get_attrs(record.study_id).get(PREFIX + "settings")
        if settings is None:
            raise StudySettingsError(f"Study {name!r} is not a catalyst run.")
        return cls(store, name, settings, maximize=record.direction == "maximize")

    def settings(self) -> dict[str, Any]:
        """The stored settings (task, config, LLM)."""
        return dict(self.storage.get_attrs(self.study_id)[PREFIX + "settings"])

    def add(self, kind: str, **data: Any) -> dict[str, Any]:
        """Store one event (``kind`` plus JSON-serialisable fields) and return it."""
        self._count += 1
        event = {
            "number": self._count,
            "kind": kind,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **data,
        }
        self.storage.set_attr(self.study_id, f"{EVENT}{self._count:06d}", event)
        return event

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Stored events in order (of one ``kind`` if given)."""
        attrs = self.storage.get_attrs(self.study_id)
        events = [attrs[k] for k in sorted(k for k in attrs if k.startswith(EVENT))]
        return [e for e in events if kind is None or e["kind"] == kind]

    def save_checkpoint(self, epoch: int, state: dict[str, Any]) -> None:
        """Replace the checkpoint with the state at the end of ``epoch``."""
        self.storage.set_attr(
            self.study_id, PREFIX + "checkpoint", {"epoch": epoch, "state": _encode(state)}
        )

    def checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """``(epoch, state)`` of the last checkpoint, or ``None``."""
        stored = self.storage.get_attrs(self.study_id).get(PREFIX + "checkpoint")
        if stored is None:
            return None
        return int(stored["epoch"]), _decode(stored["state"])
