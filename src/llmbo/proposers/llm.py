"""A chat LLM as a proposer: it reads what the candidates look like and what was measured,
and names the candidates to try next.

The prompt describes the space (a few example candidate texts; the columns the template
reads, with their values where there are few) and up to ``max_shown`` observations (the
best and a few of the worst, best last, each as candidate text and value, larger values
being better), then asks for candidates. How the answer becomes pool rows depends on the
backend (:mod:`llmbo.llm`):

* **Backends that can score** (local models, ``backend.can_score``): small models do not
  follow a format unaided, so the answer is constrained to the space. Available rows (a
  seeded random subsample of at most ``max_scored``) are ranked by the model's log
  likelihood of each candidate's text as the whole answer, divided by the text's length in
  characters (a tokenizer-independent length normalisation: the contract returns summed
  log likelihoods); the ``n`` best are proposed.
* **Backends that cannot score** (HTTP servers): the model is asked for ``n`` candidates
  (and ``spare`` more), one per line, written like the examples. Each line of the reply
  (list markers, numbering, quotes and code fences removed) is matched to the space: the
  candidate with the same text (whitespace and case aside) or, failing that, the one whose
  text is nearest (:class:`difflib.SequenceMatcher` ratio) if at least ``min_similarity``.
  Lines that match nothing, or a candidate already measured, pending or chosen earlier in
  the reply, are rejected with the reason (``info["rejected"]``).

Rows the model does not supply (too few usable lines, an unreachable backend:
:class:`~llmbo.errors.LLMError`) are drawn at random from the available ones, seeded by the
proposal's seed, with a warning; a proposal always has ``n`` rows. ``info`` records the
backend, the request messages, the raw replies, the matches (or scores), the rejections,
how many rows are random (``random_fill``) and the error, if any. Settings that can never
work (an unknown backend, a base URL that is not a URL, an unset API-key variable) raise
:class:`~llmbo.errors.InputError` when the backend is first built.
"""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import math
import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from llmbo.errors import InputError, LLMError, StudyError
from llmbo.proposers.base import PROPOSERS, Observations, Proposal, Proposer
from llmbo.proposers.random import random_rows
from llmbo.space import CandidateSpace, template_fields

if TYPE_CHECKING:
    from llmbo.llm.base import ChatBackend, ChatMessage

logger = logging.getLogger("llmbo.proposers.llm")

__all__ = ["LLMProposer", "parse_reply"]

SYSTEM_PROMPT = (
    "You help choose the next experiments of an optimisation campaign. Every candidate "
    "comes from a fixed list and is written as a short text; you only ever name candidates "
    "from that list, written exactly as in the examples."
)

#: Row states while a reply is matched.
_AVAILABLE, _MEASURED, _PENDING = 0, 1, 2

_SETTINGS = (
    "columns",
    "max_shown",
    "n_examples",
    "max_values",
    "max_scored",
    "spare",
    "min_similarity",
    "temperature",
    "max_new_tokens",
    "score_batch_size",
)


class LLMProposer(Proposer):
    """Candidates named by a chat LLM, matched to the space (or ranked by its likelihoods).

    Args:
        backend: A registered backend name (``"local"``, ``"openai"``; see
            :data:`llmbo.llm.BACKENDS`) or a :class:`~llmbo.llm.ChatBackend` object (not
            rebuildable from a stored study: register a factory for that).
        backend_options: Options of the named backend (e.g. ``model``, ``base_url``,
            ``api_key_env`` for ``"openai"``), stored with the study; never an API key.
        columns: Columns described to the model (default: those the template reads, or
            every column but the id column for a callable template).
        max_shown: Most observations shown (the best three quarters, the worst quarter).
        n_examples: Example candidate texts shown (rows spread evenly over the table).
        max_values: A column with at most this many distinct values has them all listed.
        max_scored: Most available rows scored by a backend that can score (a seeded
            random subsample when more are available).
        spare: Candidates asked for beyond ``n`` from a backend that cannot score, so that
            a few unusable lines still leave ``n``.
        min_similarity: Least :class:`difflib.SequenceMatcher` ratio for a reply line to
            match its nearest candidate text.
        temperature: Sampling temperature of the request.
        max_new_tokens: Longest reply (default: estimated from the candidate texts).
        score_batch_size: Candidates scored per forward pass.
    """

    name = "llm"
    runtime_settings = frozenset(
        {
            "backend_options.device",
            "backend_options.threads",
            "backend_options.timeout",
            "backend_options.max_retries",
        }
    )

    def __init__(
        self,
        backend: str | ChatBackend = "local",
        backend_options: dict[str, Any] | None = None,
        *,
        columns: list[str] | None = None,
        max_shown: int = 20,
        n_examples: int = 5,
        max_values: int = 12,
        max_scored: int = 256,
        spare: int = 3,
        min_similarity: float = 0.8,
        temperature: float = 0.7,
        max_new_tokens: int | None = None,
        score_batch_size: int = 16,
    ) -> None:
        from llmbo.llm.base import BACKENDS, ChatBackend, GenerationConfig

        self._backend: ChatBackend | None = None
        if isinstance(backend, ChatBackend):
            if backend_options:
                raise InputError("backend_options apply to a backend name, not a backend object.")
            self._backend = backend
            self.backend_name = backend.name
            self.backend_options: dict[str, Any] = {}
        elif isinstance(backend, str):
            factory = BACKENDS.get(backend)  # unknown name -> InputError listing the choices
            self.backend_name = backend.lower()
            self.backend_options = _full_options(factory, backend, backend_options or {})
        else:
            raise InputError(
                f"backend must be a backend name such as 'local' or 'openai', or a ChatBackend; "
                f"got {type(backend).__name__}."
            )
        self.columns = list(columns) if columns is not None else None
        self.max_shown = _count(max_shown, "max_shown", 0)
        self.n_examples = _count(n_examples, "n_examples", 1)
        self.max_values = _count(max_values, "max_values", 0)
        self.max_scored = _count(max_scored, "max_scored", 1)
        self.spare = _count(spare, "spare", 0)
        self.score_batch_size = _count(score_batch_size, "score_batch_size", 1)
        if isinstance(min_similarity, bool) or not (0 < float(min_similarity) <= 1):
            raise InputError(f"min_similarity must be in (0, 1], got {min_similarity!r}.")
        self.min_similarity = float(min_similarity)
        self.max_new_tokens = (
            None if max_new_tokens is None else _count(max_new_tokens, "max_new_tokens", 1)
        )
        GenerationConfig(temperature=temperature)  # range check
        self.temperature = float(temperature)
        self._texts: tuple[str, list[str], dict[str, int]] | None = None

    # ------------------------------------------------------------------ backend
    @property
    def backend(self) -> ChatBackend:
        """The chat backend, built on first use (:class:`InputError` for settings that can
        never work, e.g. an unset API-key variable)."""
        if self._backend is None:
            from llmbo.llm.base import make_backend

            self._backend = make_backend(self.backend_name, **self.backend_options)
        return self._backend

    @property
    def label(self) -> str:
        if self._backend is not None:
            return f"llm ({self._backend.label})"
        return f"llm ({self.backend_name}:{self.backend_options.get('model', '?')})"

    def config(self) -> dict[str, Any]:
        options: dict[str, Any] = dict(self.backend_options)
        if self._backend is not None and not self.backend_options:
            options = {"instance": self._backend.label}
        return {
            "name": self.name,
            "backend": self.backend_name,
            "backend_options": options,
            **{key: getattr(self, key) for key in _SETTINGS},
        }

    # ------------------------------------------------------------------ propose
    def propose(
        self, space: CandidateSpace, observed: Observations, n: int, *, seed: int
    ) -> Proposal:
        from llmbo.llm.base import GenerationConfig

        start = time.perf_counter()
        backend = self.backend
        scoring = bool(backend.can_score)
        ask = n + self.spare
        messages = self.messages(space, observed, 1 if scoring else ask, constrained=scoring)
        info: dict[str, Any] = {
            "backend": backend.label,
            "mode": "score" if scoring else "chat",
            "messages": [m.to_dict() for m in messages],
            "replies": [],
            "matches": [],
            "rejected": [],
            "random_fill": 0,
            "error": None,
            "n_train": len(observed),
        }
        chosen: list[int] = []
        try:
            if scoring:
                chosen = self._ranked(backend, space, observed, messages, n, seed, info)
            else:
                generation = GenerationConfig(
                    max_new_tokens=self.max_new_tokens or _reply_tokens(space, ask),
                    temperature=self.temperature,
                    n=1,
                    seed=int(seed),
                )
                replies = backend.chat(messages, generation)
                info["replies"] = list(replies)
                chosen = self._matched(space, observed, "\n".join(replies), n, info)
        except LLMError as exc:
            info["error"] = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "The LLM %s could not answer (%s); proposing %d candidate(s) at random.",
                backend.label,
                exc,
                n,
            )
        missing = n - len(chosen)
        if missing > 0:
            rest = np.setdiff1d(observed.available, np.asarray(chosen, dtype=np.int64))
            chosen += [int(r) for r in random_rows(rest, missing, seed)]
            info["random_fill"] = missing
            if info["error"] is None:
                logger.warning(
                    "The LLM %s gave %d usable candidate(s) of %d (%d line(s) rejected); the "
                    "other %d are random.",
                    backend.label,
                    n - missing,
                    n,
                    len(info["rejected"]),
                    missing,
                )
        info["seconds"] = time.perf_counter() - start
        return Proposal(chosen, info)

    def _ranked(
        self,
        backend: ChatBackend,
        space: CandidateSpace,
        observed: Observations,
        messages: list[ChatMessage],
        n: int,
        seed: int,
        info: dict[str, Any],
    ) -> list[int]:
        """The ``n`` available rows (of a seeded subsample) whose texts the model finds
        likeliest as its answer, by log likelihood per character."""
        available = observed.available
        if len(available) > self.max_scored:
            rows = sorted(random_rows(available, self.max_scored, seed))
        else:
            rows = [int(r) for r in available]
        texts = [_one_line(space.texts[r]) for r in rows]
        scores = backend.score(messages, texts, batch_size=self.score_batch_size)
        if len(scores) != len(rows):
            raise LLMError(f"The backend returned {len(scores)} scores for {len(rows)} replies.")
        per_char = [
            float(s) / max(1, len(t)) if math.isfinite(float(s)) else -math.inf
            for s, t in zip(scores, texts, strict=True)
        ]
        order = sorted(range(len(rows)), key=lambda k: (-per_char[k], rows[k]))[:n]
        info["n_scored"] = len(rows)
        info["matches"] = [
            {
                "candidate_id": space.ids[rows[k]],
                "row": rows[k],
                "log_likelihood": float(scores[k]),
                "per_char": per_char[k],
                "how": "scored",
            }
            for k in order
        ]
        return [rows[k] for k in order]

    def _matched(
        self,
        space: CandidateSpace,
        observed: Observations,
        reply: str,
        n: int,
        info: dict[str, Any],
    ) -> list[int]:
        """The first ``n`` usable rows named in ``reply``; records matches and rejections."""
        _, normed, exact = self._text_index(space)
        state = np.full(len(space), _AVAILABLE, dtype=np.int8)
        state[observed.index] = _MEASURED
        state[observed.pending] = _PENDING
        chosen: list[int] = []
        lines = parse_reply(reply)
        for k, line in enumerate(lines):
            if len(chosen) == n:
                info["unused_lines"] = lines[k:]
                break
            row, similarity, how = _match(line, normed, exact)
            if row is None or similarity < self.min_similarity:
                closest = (
                    f"; closest {space.texts[row]!r} at {similarity:.2f}" if row is not None else ""
                )
                info["rejected"].append(
                    {
                        "line": line,
                        "reason": f"not a candidate (similarity below {self.min_similarity:g}"
                        f"{closest})",
                        "candidate_id": None,
                        "similarity": similarity,
                    }
                )
                continue
            cid = space.ids[row]
            reason = None
            if row in chosen:
                reason = "repeats a candidate chosen earlier in this reply"
            elif state[row] == _MEASURED:
                reason = "already measured"
            elif state[row] == _PENDING:
                reason = "pending (suggested earlier, not measured yet)"
            if reason is not None:
                info["rejected"].append(
                    {"line": line, "reason": reason, "candidate_id": cid, "similarity": similarity}
                )
                continue
            chosen.append(row)
            info["matches"].append(
                {
                    "line": line,
                    "candidate_id": cid,
                    "row": row,
                    "similarity": similarity,
                    "how": how,
                }
            )
        return chosen

    def _text_index(self, space: CandidateSpace) -> tuple[str, list[str], dict[str, int]]:
        """Normalised candidate texts and a lookup of them, built once per space."""
        key = space.content_hash()
        if self._texts is None or self._texts[0] != key:
            normed = [_normalise(t) for t in space.texts]
            exact: dict[str, int] = {}
            for row, text in enumerate(normed):
                exact.setdefault(text, row)
            self._texts = (key, normed, exact)
        return self._texts

    # ------------------------------------------------------------------ prompt
    def messages(
        self, space: CandidateSpace, observed: Observations, n: int, *, constrained: bool = False
    ) -> list[ChatMessage]:
        """The request: the space, the observations, and what to answer (``n`` lines, or
        with ``constrained`` one candidate whose likelihood is scored)."""
        from llmbo.llm.base import ChatMessage

        parts = [self._describe_space(space), self._describe_observations(space, observed)]
        if constrained:
            parts.append(
                "Propose the one new candidate most likely to have a high value. Answer with "
                "that candidate only, written exactly like the examples."
            )
        else:
            what = "candidate" if n == 1 else f"{n} different candidates"
            parts.append(
                f"Propose {what} likely to have a high value, none of them measured or "
                "awaiting measurement. Write one candidate per line, exactly in the format of "
                "the examples, with nothing else: no numbering, no comments."
            )
        return [ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", "\n\n".join(parts))]

    def _describe_space(self, space: CandidateSpace) -> str:
        rows = np.unique(np.linspace(0, len(space) - 1, min(self.n_examples, len(space))).round())
        lines = [
            f"There are {len(space)} candidates. Each one is written like these examples:",
            *(f"{_one_line(space.texts[int(r)])}" for r in rows),
        ]
        columns = self._columns(space)
        if columns:
            lines += ["", "They differ in these properties:"]
            lines += [_describe_column(space.frame[c], c, self.max_values) for c in columns]
        return "\n".join(lines)

    def _columns(self, space: CandidateSpace) -> list[str]:
        frame = space.frame
        if self.columns is not None:
            missing = [c for c in self.columns if c not in frame.columns]
            if missing:
                raise InputError(f"LLM proposer columns {missing} are not in the table.")
            return self.columns
        if isinstance(space.template, str):
            return template_fields(space.template)
        return [str(c) for c in frame.columns if c != space.id_column]

    def _describe_observations(self, space: CandidateSpace, observed: Observations) -> str:
        lines: list[str] = []
        if len(observed) == 0:
            lines.append("Nothing has been measured yet.")
        elif self.max_shown == 0:
            lines.append(f"{len(observed)} candidates have been measured (not shown).")
        else:
            order = np.argsort(observed.values, kind="stable")
            if len(order) > self.max_shown:
                worst = self.max_shown // 4
                order = np.concatenate(
                    [order[:worst], order[len(order) - self.max_shown + worst :]]
                )
            shown = (
                f"all {len(observed)}"
                if len(order) == len(observed)
                else f"{len(order)} of {len(observed)} (the best and a few of the worst)"
            )
            lines.append(
                f"Measured so far, {shown}, from worst to best (higher values are better):"
            )
            lines += [
                f"{_one_line(space.texts[int(observed.index[k])])}    "
                f"(value: {float(observed.values[k]):.4g})"
                for k in order
            ]
        if len(observed.pending):
            pending = observed.pending[: max(self.max_shown, 1)]
            more = len(observed.pending) - len(pending)
            lines += ["", "Awaiting measurement (do not propose these):"]
            lines += [_one_line(space.texts[int(r)]) for r in pending]
            if more:
                lines.append(f"(and {more} more)")
        return "\n".join(lines)


# ---------------------------------------------------------------------- reply parsing
_FENCE = re.compile(r"^\s*(```|~~~)")
#: A list marker (``-``, ``*``, ``•``, ``1.``, ``2)``, ``(3)``) followed by a space.
_MARKER = re.compile(r"^(?:[-*•·+>]+|\(?\d{1,3}[.):\]]|#\d{1,3}[.:)]?)\s+")
_VALUE_NOTE = re.compile(r"\s*\((?:value|expected|predicted)[^)]*\)\s*$", re.IGNORECASE)
_QUOTES = "\"'`“”‘’*"


def parse_reply(reply: str) -> list[str]:
    """The candidate lines of a reply: code fences and blank lines dropped, list markers,
    numbering, surrounding quotes (and a trailing ``(value: ...)`` note) removed."""
    out = []
    for raw in str(reply).splitlines():
        if _FENCE.match(raw):
            continue
        line = raw.strip()
        while True:
            stripped = _MARKER.sub("", line, count=1).strip()
            stripped = _VALUE_NOTE.sub("", stripped).strip().strip(_QUOTES).strip()
            if stripped == line:
                break
            line = stripped
        if line:
            out.append(line)
    return out


def _one_line(text: str) -> str:
    """A candidate text on one line (its lines joined by `` | ``)."""
    return " | ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _normalise(text: str) -> str:
    return " ".join(_one_line(text).casefold().split())


def _match(line: str, normed: list[str], exact: dict[str, int]) -> tuple[int | None, float, str]:
    """``(row, similarity, "exact" | "nearest")`` of the candidate text closest to ``line``
    (ties: the first row); ``(None, 0.0, "nearest")`` for an empty space."""
    wanted = _normalise(line)
    row = exact.get(wanted)
    if row is not None:
        return row, 1.0, "exact"
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(wanted)
    best, best_row = -1.0, None
    for k, text in enumerate(normed):
        matcher.set_seq1(text)
        if (
            matcher.real_quick_ratio() > best
            and matcher.quick_ratio() > best
            and (ratio := matcher.ratio()) > best
        ):
            best, best_row = ratio, k
    return best_row, max(best, 0.0), "nearest"


# ---------------------------------------------------------------------- space text
def _describe_column(values: pd.Series, name: str, max_values: int) -> str:
    distinct = pd.unique(values.dropna())
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric:
        distinct = np.sort(distinct)
    if len(distinct) <= max_values:
        shown = ", ".join(_short(v) for v in distinct)
        return f"- {name}: {len(distinct)} value(s): {shown}"
    if numeric:
        low, high = float(np.min(distinct)), float(np.max(distinct))
        return f"- {name}: {len(distinct)} distinct numbers from {low:g} to {high:g}"
    shown = ", ".join(_short(v) for v in distinct[:3])
    return f"- {name}: {len(distinct)} distinct values, e.g. {shown}"


def _short(value: Any, width: int = 60) -> str:
    text = _one_line(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _reply_tokens(space: CandidateSpace, lines: int) -> int:
    """A reply budget for ``lines`` candidate lines (about 3 characters per token)."""
    longest = max(len(_one_line(t)) for t in space.texts)
    return int(min(4096, lines * (longest // 3 + 8) + 32))


# ---------------------------------------------------------------------- settings
def _count(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise InputError(f"{name} must be an integer >= {least}, got {value!r}.")
    return int(value)


def _full_options(factory: Any, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The backend's options with its defaults filled in (so stored settings compare
    field by field), checked to be serialisable and free of secrets."""
    if not isinstance(options, dict):
        raise InputError(f"backend_options must be a dict, got {type(options).__name__}.")
    secret = sorted(k for k in options if "key" in k.lower() and k != "api_key_env")
    if secret:
        raise InputError(
            f"backend_options {secret} look like secrets, which are never stored with a "
            "study; put the key in an environment variable and pass its name as api_key_env."
        )
    try:
        bound = inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise InputError(f"Bad options for the {name!r} LLM backend: {exc}") from exc
    bound.apply_defaults()
    full = {
        key: value
        for key, value in bound.arguments.items()
        if inspect.signature(factory).parameters[key].kind
        not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }
    try:
        json.dumps(full)
    except (TypeError, ValueError) as exc:
        raise InputError(f"backend_options must be JSON values (they are stored): {exc}") from exc
    return full


def _settings_of(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config[key] for key in _SETTINGS if key in config}


@PROPOSERS.register("llm")
def _from_config(config: dict[str, Any]) -> LLMProposer:
    extra = sorted(set(config) - {"name", "backend", "backend_options", *_SETTINGS})
    if extra:
        raise StudyError(f"The llm proposer has no settings {extra}.")
    options = dict(config.get("backend_options") or {})
    if "instance" in options:
        raise StudyError(
            f"This study used a custom LLM backend object ({options['instance']}); pass it "
            "again, or register a factory in llmbo.llm.BACKENDS to store it by name."
        )
    return LLMProposer(config.get("backend", "local"), options, **_settings_of(config))
