"""Settings of a catalyst run: soft-prompt training, the mentor's stages and its replies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from llmbo.errors import InputError
from llmbo.llm.base import GenerationConfig

__all__ = ["CatalystConfig"]


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}.")


@dataclass
class CatalystConfig:
    """How a catalyst run trains and when it consults the mentor.

    Defaults follow LLM-catalyst (arXiv 2405.19732) where it states them: 8 soft-prompt
    vectors, the mentor after epochs 0, 1 and 2, at most 5 of the stage's decoded prompts
    shown, 3 proposals asked for, each under 9 words.

    Attributes:
        num_virtual_tokens: Soft-prompt vectors (``peft.PromptTuningConfig``).
        epochs: Training epochs.
        mentor_epochs: Epochs (0-based) after which the mentor is consulted.
        max_shown: Distinct decoded prompts of a stage shown to the mentor (a seeded
            subsample when the stage decoded more).
        proposals: New prompts asked for per consultation.
        max_words: Longest accepted proposal, in words (the meta-prompt asks for fewer).
        min_words: Shortest accepted proposal, in words.
        restart_from: ``"first"`` valid proposal (as the original) or the ``"best"`` of the
            valid proposals on validation.
        restart_when: ``"always"`` restart from the chosen proposal (as the original), or
            only when it ``"improves"`` on the current soft prompt's validation loss (the
            head kept as trained); otherwise training goes on from where it was.
        learning_rate: AdamW learning rate of the soft prompt.
        head_learning_rate: AdamW learning rate of the task head.
        batch_size: Training batch size.
        max_length: Tokens per text (the prompt vectors come on top).
        init_text: Text the soft prompt starts from (its word embeddings, padded or cut);
            ``None`` starts from the embeddings of random vocabulary tokens.
        seed: Seed of initialisation, shuffling, dropout, subsampling and the mentor.
        device: ``"cpu"``, ``"cuda"``... (default: CUDA when available).
        generation: The mentor's sampling settings (``n`` is ignored: one reply per
            consultation, holding ``proposals`` lines).
    """

    num_virtual_tokens: int = 8
    epochs: int = 10
    mentor_epochs: tuple[int, ...] = (0, 1, 2)
    max_shown: int = 5
    proposals: int = 3
    max_words: int = 9
    min_words: int = 1
    restart_from: Literal["first", "best"] = "first"
    restart_when: Literal["always", "improves"] = "always"
    learning_rate: float = 3e-3
    head_learning_rate: float = 1e-3
    batch_size: int = 32
    max_length: int = 32
    init_text: str | None = None
    seed: int = 0
    device: str | None = None
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        _positive_int("num_virtual_tokens", self.num_virtual_tokens)
        _positive_int("epochs", self.epochs)
        _positive_int("max_shown", self.max_shown)
        _positive_int("proposals", self.proposals)
        _positive_int("max_words", self.max_words)
        _positive_int("min_words", self.min_words)
        _positive_int("batch_size", self.batch_size)
        _positive_int("max_length", self.max_length)
        _positive_int("seed", self.seed, minimum=0)
        if self.min_words > self.max_words:
            raise InputError(
                f"min_words ({self.min_words}) is larger than max_words ({self.max_words})."
            )
        epochs = tuple(self.mentor_epochs)
        for e in epochs:
            if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e < self.epochs:
                raise InputError(
                    f"mentor_epochs must be epoch numbers in [0, {self.epochs - 1}]; got {e!r} "
                    f"in {list(epochs)}. Use fewer mentor rounds or more epochs."
                )
        self.mentor_epochs = tuple(sorted(set(epochs)))
        if self.restart_from not in ("first", "best"):
            raise InputError(f"restart_from must be 'first' or 'best', got {self.restart_from!r}.")
        if self.restart_when not in ("always", "improves"):
            raise InputError(
                f"restart_when must be 'always' or 'improves', got {self.restart_when!r}."
            )
        for name in ("learning_rate", "head_learning_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise InputError(f"{name} must be a positive number, got {value!r}.")
        if isinstance(self.generation, dict):
            self.generation = GenerationConfig(**self.generation)

    @classmethod
    def with_rounds(cls, rounds: int, **kwargs: Any) -> CatalystConfig:
        """The mentor after each of the first ``rounds`` epochs (the paper: 3)."""
        _positive_int("rounds", rounds)
        return cls(mentor_epochs=tuple(range(rounds)), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mentor_epochs"] = list(self.mentor_epochs)
        return data
