"""A pool of candidate texts tokenised once for :class:`~llmbo.encoders.transformer.TextEncoder`:
padded ids and masks, each text's length and segments, and length-grouped batches."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from llmbo.errors import InputError

if TYPE_CHECKING:
    from llmbo.encoders.transformer import EncoderConfig

logger = logging.getLogger("llmbo.encoders")

__all__ = ["TokenizedPool", "tokenize_pool"]


@dataclass
class TokenizedPool:
    """Every candidate tokenised once.

    Attributes:
        input_ids: Token ids, one right-padded row per candidate.
        attention: The attention mask of ``input_ids`` (1 for real tokens).
        lengths: Real tokens per candidate.
        segments: Segment number of every token (``-1`` for special and padding tokens),
            for segment pooling only.
        n_segments: How many segments the texts have (0 without segment pooling).
    """

    input_ids: Tensor
    attention: Tensor
    lengths: Tensor
    segments: Tensor | None = None
    n_segments: int = 0

    def batches(
        self, index: Tensor, batch_size: int, progress: bool, desc: str
    ) -> Iterator[Tensor]:
        """Yield index batches grouped by token length (less padding)."""
        order = index[torch.argsort(self.lengths[index], stable=True)]
        chunks = list(torch.split(order, batch_size))
        if progress and len(chunks) > 1:
            from tqdm.auto import tqdm

            yield from tqdm(chunks, desc=desc, leave=False, disable=None)
        else:
            yield from chunks

    def tokens(self, index: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """Ids and attention mask of rows ``index``, as wide as their longest text."""
        width = int(self.lengths[index].max())
        return (
            self.input_ids[index, :width].to(device),
            self.attention[index, :width].to(device),
        )

    def token_slots(self, index: Tensor, offsets: Tensor) -> Tensor:
        """Positions of rows ``index``' real tokens, row after row, in a packed token cache
        where the tokens of row ``r`` start at ``offsets[r]``."""
        lengths = self.lengths[index]
        starts = torch.repeat_interleave(offsets[index], lengths)
        first = torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        return starts + torch.arange(int(lengths.sum())) - first

    def pool(
        self, hidden: Tensor, mask: Tensor, index: Tensor, pooling: str, n_soft: int
    ) -> Tensor:
        """One vector per row of the token states ``hidden`` of rows ``index`` (``mask``: their
        attention mask; ``n_soft`` soft tokens appended after each text)."""
        if pooling == "segments":
            return self._pool_segments(hidden, index, n_soft)
        if pooling == "cls":
            return hidden[:, 0]
        if pooling == "last":
            last = mask.sum(dim=1) - 1
            if n_soft:
                last = torch.full_like(last, hidden.shape[1] - 1)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def _pool_segments(self, hidden: Tensor, index: Tensor, n_soft: int) -> Tensor:
        assert self.segments is not None
        width = hidden.shape[1] - n_soft
        seg = self.segments[index, :width].to(hidden.device)
        n_seg = self.n_segments
        if n_soft:  # soft tokens pool into their own extra segment
            soft = torch.full((len(index), n_soft), n_seg, dtype=seg.dtype, device=seg.device)
            seg = torch.cat([seg, soft], dim=1)
            n_seg += 1
        onehot = torch.nn.functional.one_hot(seg.clamp_min(0), n_seg).to(hidden.dtype)
        onehot = onehot * (seg >= 0).unsqueeze(-1).to(hidden.dtype)  # b x L x S
        sums = torch.einsum("bls,blh->bsh", onehot, hidden)
        counts = onehot.sum(1).clamp_min(1.0).unsqueeze(-1)
        return (sums / counts).reshape(len(index), n_seg * hidden.shape[-1])


def tokenize_pool(
    tokenizer: Any, texts: Sequence[str], config: EncoderConfig, hf_config: Any, n_soft: int
) -> TokenizedPool:
    """Tokenise ``texts`` once (padded to the longest, truncated to ``config.max_length`` and
    the model's positions less ``n_soft`` soft tokens); segment numbers for segment pooling."""
    if len(texts) == 0:
        raise InputError("Cannot encode an empty pool of texts.")
    tok = tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "right"
    max_length = config.max_length
    positions = getattr(hf_config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        # Leave room for soft tokens and BERT-style position offsets.
        max_length = min(max_length, positions - n_soft - 2)
    segments = config.pooling == "segments"
    if segments and not getattr(tok, "is_fast", False):
        raise InputError("pooling='segments' needs a fast (Rust) tokenizer for offsets.")
    enc = tok(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding="longest",
        return_tensors="pt",
        return_offsets_mapping=segments,
        return_special_tokens_mask=segments,
    )
    attention = enc["attention_mask"]
    pool = TokenizedPool(enc["input_ids"], attention, attention.sum(dim=1))
    if segments:
        pool.segments = _segment_ids(texts, enc, config.segment_separator)
        pool.n_segments = int(pool.segments.max()) + 1
    n_truncated = int((pool.lengths >= max_length).sum())
    if n_truncated:
        logger.warning(
            "%d of %d texts were truncated to %d tokens.", n_truncated, len(texts), max_length
        )
    return pool


def _segment_ids(texts: Sequence[str], enc: Any, sep: str) -> Tensor:
    """Segment number of every token (``-1`` for special and padding tokens)."""
    starts = enc["offset_mapping"][..., 0]
    seg = torch.full_like(starts, -1)
    for row, text in enumerate(texts):  # once per study, at tokenisation
        bounds = torch.tensor(
            [i + len(sep) for i in range(len(text)) if text.startswith(sep, i)],
            dtype=starts.dtype,
        )
        seg[row] = torch.bucketize(starts[row].contiguous(), bounds, right=True)
    real = (enc["special_tokens_mask"] == 0) & (enc["attention_mask"] == 1)
    return torch.where(real, seg, torch.full_like(seg, -1))
