"""Exceptions raised by llmbo. Every message names the bad value and what to do about it."""

from __future__ import annotations


class LlmboError(Exception):
    """Base class of every error llmbo raises on purpose."""


class InputError(LlmboError, ValueError):
    """User input (a table, template, value or option) is invalid."""


class SpaceError(InputError):
    """A candidate space cannot be built from the given table or template."""


class DuplicateCandidatesError(SpaceError):
    """Two or more candidates render to the same text or share an id."""


class ObjectiveValueError(InputError):
    """A measured value is NaN, infinite or not a number."""


class PoolExhaustedError(InputError):
    """More candidates were requested than remain unevaluated in the pool."""


class UnknownCandidateError(InputError, KeyError):
    """A candidate id is not part of the space."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ModelLoadError(LlmboError, OSError):
    """A transformer model or tokenizer could not be loaded."""


class MissingDependencyError(LlmboError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""


class StudyError(LlmboError):
    """A study file or database is missing, incompatible or inconsistent."""


class StudyFileError(StudyError, InputError):
    """A study file or database URL is not an llmbo study, is damaged, or cannot be opened
    the way it was asked (e.g. read-only). The CLI exits with status 2."""


class StudySettingsError(StudyError, InputError):
    """A study was reopened with settings other than those it was created with."""


class TrialStateError(StudyError):
    """A trial transition is not allowed (e.g. telling a conflicting value)."""


class FitError(LlmboError, RuntimeError):
    """A surrogate could not be fitted even after the documented fallbacks."""


class LLMError(LlmboError):
    """A language-model backend could not give a usable answer."""


class LLMUnavailableError(LLMError, ConnectionError):
    """The backend is unreachable, timed out, refused the request or replied with something
    that is not a chat completion (after its retries)."""
