"""A learnable token reading the cached states of a prompt's statements.

Built for large grids of prompts (the LoRA hyperparameter grid has 45,360): a prompt is a
few statements, one per line (one about each hyperparameter or interaction), and each
statement is read on its own by the frozen transformer and mean-pooled into a state
vector. A grid's prompts share their statements (the 45,360 default prompts hold about a
thousand distinct lines), so a study encodes each distinct statement once and keeps an
``N x S`` table of statement numbers instead of running the network per prompt. The
learnable token is a query vector in the transformer's hidden space: it attends over a
prompt's statement states (single-head scaled dot product on the layer-normalised states)
and re-weights them, so the features of a candidate are its statement states scaled by
``S x`` their attention weights and concatenated. The token starts at zero, where every
weight is ``1/S`` and the features are the plain concatenation (the "no token" ablation,
``token=False``, keeps it there). Training it by marginal likelihood lets the model decide,
from what each statement says, which statements matter for this objective. Scoring every
candidate is then one batched gather and product per fit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmbo.encoders.transformer import EncoderConfig, TextEncoder
from llmbo.errors import InputError

logger = logging.getLogger("llmbo.encoders")

__all__ = ["PromptTokenEncoder", "split_statements"]

#: Rows per chunk when all candidates' features are computed at once.
EMBED_CHUNK = 8192


def split_statements(texts: Sequence[str], separator: str) -> tuple[list[str], Tensor]:
    """The distinct statements of ``texts`` and an ``N x S`` long table of their numbers
    (prompts with fewer statements are padded with the empty statement)."""
    parts = [[p.strip() for p in t.split(separator)] for t in texts]
    width = max((len(p) for p in parts), default=1)
    number: dict[str, int] = {}
    table = torch.empty(len(parts), width, dtype=torch.long)
    for i, row in enumerate(parts):
        row = row + [""] * (width - len(row))
        for j, statement in enumerate(row):
            table[i, j] = number.setdefault(statement, len(number))
    return list(number), table


class PromptTokenEncoder(nn.Module):
    """Frozen statement states of every prompt plus one learnable query token.

    Args:
        config: How to load and run the transformer; statements are the parts of a text
            between ``segment_separator`` and are pooled as ``pooling`` says (``"segments"``
            reads as ``"mean"``).
        token: Train the token (``False``: features stay the plain concatenation).
        in_context: Read each whole prompt in one pass and pool its statements from there
            (each statement's state then depends on the others; one transformer pass per
            prompt instead of per distinct statement, far slower on large grids).

    The module follows the encoder contract of :class:`~llmbo.surrogates.deep_kernel.
    DeepKernelGP`: :meth:`prepare`, ``forward(index)`` (``n`` long -> ``n x S*H``
    float32), :meth:`embed`, :meth:`trainable_parameters`, :meth:`reset_parameters`,
    ``output_size`` and ``device``.
    """

    def __init__(
        self, config: EncoderConfig, *, token: bool = True, in_context: bool = False
    ) -> None:
        super().__init__()
        self.config = config
        self.use_token = bool(token)
        self.in_context = bool(in_context)
        self.statement_states: Tensor | None = None
        self.statement_index: Tensor | None = None
        self.query: nn.Parameter | None = None
        self.device = torch.device("cpu")

    def prepare(self, texts: Sequence[str], *, progress: bool = False) -> PromptTokenEncoder:
        """Read every distinct statement once with the frozen transformer."""
        if self.in_context:
            return self._prepare_in_context(list(texts), progress=progress)
        statements, table = split_statements(list(texts), self.config.segment_separator)
        pooling = "mean" if self.config.pooling == "segments" else self.config.pooling
        encoder = TextEncoder(replace(self.config, pooling=pooling))
        encoder.prepare([s or "none" for s in statements], progress=progress)
        states = encoder.embed(progress=progress).to("cpu", torch.float32)
        del encoder
        logger.info(
            "Read %d distinct statements of %d prompts (%d per prompt)",
            len(statements),
            len(table),
            table.shape[1],
        )
        self.statement_states = states
        self.statement_index = table
        self.query = nn.Parameter(torch.zeros(states.shape[-1]), requires_grad=self.use_token)
        return self

    # ----------------------------------------------------------------- contract
    def _prepare_in_context(self, texts: list[str], *, progress: bool) -> PromptTokenEncoder:
        encoder = TextEncoder(replace(self.config, pooling="segments"))
        encoder.prepare(texts, progress=progress)
        flat = encoder.embed(progress=progress).to("cpu", torch.float32)
        width = max(1, int(encoder.n_segments))
        del encoder
        self.statement_states = flat.reshape(len(texts) * width, -1)
        self.statement_index = torch.arange(len(texts) * width).reshape(len(texts), width)
        self.query = nn.Parameter(
            torch.zeros(self.statement_states.shape[-1]), requires_grad=self.use_token
        )
        return self

    def _require(self) -> tuple[Tensor, Tensor, nn.Parameter]:
        if self.statement_states is None or self.statement_index is None or self.query is None:
            raise InputError("Call prepare(texts) first: the statement states come from the pool.")
        return self.statement_states, self.statement_index, self.query

    @property
    def n_statements(self) -> int:
        """Statements per prompt (``S``)."""
        return int(self._require()[1].shape[1])

    @property
    def hidden_size(self) -> int:
        return int(self._require()[0].shape[1])

    @property
    def output_size(self) -> int:
        return self.n_statements * self.hidden_size

    def states(self, index: Tensor) -> Tensor:
        """Statement states of pool rows ``index`` (``n x S x H``, float32)."""
        table, numbers, _ = self._require()
        return table[numbers[index.to(numbers.device)]]

    def statement_scores(self) -> Tensor:
        """The token's attention score of every distinct statement (``U``): scaled dot
        product with the layer-normalised statement state."""
        table, _, query = self._require()
        keys = F.layer_norm(table, table.shape[-1:])
        return keys @ query / math.sqrt(table.shape[-1])

    def weights(self, index: Tensor) -> Tensor:
        """Attention of the token over the statements of rows ``index`` (``n x S``)."""
        numbers = self._require()[1]
        return torch.softmax(self.statement_scores()[numbers[index.to(numbers.device)]], dim=-1)

    def forward(self, index: Tensor) -> Tensor:
        rows = self.states(index)
        weights = self.weights(index)
        return (rows * (rows.shape[1] * weights).unsqueeze(-1)).flatten(1)

    def embed(self, index: Tensor | None = None, *, progress: bool = False) -> Tensor:
        """Features of rows ``index`` (all rows if ``None``), without gradients."""
        numbers = self._require()[1]
        rows = torch.arange(len(numbers)) if index is None else torch.as_tensor(index)
        with torch.no_grad():
            return torch.cat([self(chunk) for chunk in rows.split(EMBED_CHUNK)])

    def trainable_parameters(self) -> list[nn.Parameter]:
        query = self._require()[2]
        return [query] if self.use_token else []

    def reset_parameters(self) -> None:
        """Put the token back at zero (uniform attention)."""
        query = self._require()[2]
        with torch.no_grad():
            query.zero_()
