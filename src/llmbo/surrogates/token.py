"""The ``token`` surrogate: a deep kernel on cached statement states and a learnable token.

The surrogate of the language-aided LoRA hyperparameter search (arXiv 2602.11171): a
frozen transformer reads each configuration's prompt once, a learnable token re-weights
the prompt's statements (:class:`~llmbo.encoders.prompt_token.PromptTokenEncoder`), and a
projection head and the GP are trained with it by exact marginal likelihood, exactly as
in the other deep kernels (:class:`~llmbo.surrogates.deep_kernel.DeepKernelGP`).
"""

from __future__ import annotations

from typing import Any

from llmbo.encoders.base import Featurizer
from llmbo.encoders.prompt_token import PromptTokenEncoder
from llmbo.surrogates.deep_kernel import DeepKernelConfig, DeepKernelGP

__all__ = ["TokenDeepKernelGP"]


class TokenDeepKernelGP(DeepKernelGP):
    """:class:`DeepKernelGP` over a :class:`PromptTokenEncoder`."""

    def __init__(
        self,
        encoder: PromptTokenEncoder,
        config: DeepKernelConfig | None = None,
        *,
        name: str = "token",
        side_featurizer: Featurizer | None = None,
        noise_prior: bool = False,
    ) -> None:
        super().__init__(
            encoder,  # type: ignore[arg-type]
            config,
            name=name,
            side_featurizer=side_featurizer,
            noise_prior=noise_prior,
        )

    def config(self) -> dict[str, Any]:
        enc = self.encoder
        return {
            "name": self.name,
            "encoder": enc.config.to_dict(),
            "token": enc.use_token,  # type: ignore[attr-defined]
            "in_context": enc.in_context,  # type: ignore[attr-defined]
            "side_features": type(self.side_featurizer).__name__ if self.side_featurizer else None,
            "noise_prior": self.noise_prior,
            "deep_kernel": self.config_.to_dict(),
        }
