"""A daemon thread that keeps the leases of running trials alive."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from llmbo.storage import BaseStorage, TrialState

logger = logging.getLogger("llmbo.study")

__all__ = ["Heartbeat"]


class Heartbeat:
    """A daemon thread that keeps the leases of some ``RUNNING`` trials alive.

    Failures to reach the database are logged and retried at the next beat; a trial that
    is no longer ``RUNNING`` (its lease expired and another worker noticed) is dropped from
    the beat with a warning. The thread never touches anything else.
    """

    def __init__(
        self, storage: BaseStorage, trial_ids: Sequence[int], lease: float, interval: float
    ) -> None:
        self.storage = storage
        self.trial_ids = list(trial_ids)
        self.lease = lease
        self.interval = interval
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmbo-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=max(5.0, 2 * self.interval))

    def _loop(self) -> None:
        while self.trial_ids and not self._stop.wait(self.interval):
            try:
                records = self.storage.heartbeat(self.trial_ids, self.lease)
            except Exception as exc:  # keep beating: the next attempt may reach the database
                logger.warning("Heartbeat for trials %s failed: %r", self.trial_ids, exc)
                continue
            self.beats += 1
            lost = [r for r in records if r.state is not TrialState.RUNNING]
            for r in lost:
                logger.warning(
                    "Trial %d (candidate %s) lost its lease (%s: %s); its result will be "
                    "stored only if nobody reserved the candidate meanwhile.",
                    r.trial_id,
                    r.candidate_id,
                    r.state.name,
                    r.error,
                )
            gone = {r.trial_id for r in lost}
            self.trial_ids = [t for t in self.trial_ids if t not in gone]
