"""A frozen Hugging Face encoder with a trainable soft prompt (PEFT prompt tuning) and a
task head, and the map between the soft prompt and vocabulary tokens.

The soft prompt is PEFT's prompt-tuning embedding (``num_virtual_tokens x hidden``),
prepended to every input. :meth:`SoftPromptModel.nearest_tokens` projects each of its
vectors onto the vocabulary token whose input embedding is the most cosine-similar
(special tokens excluded); :meth:`SoftPromptModel.text_vectors` goes the other way, from
a text to the word embeddings of its tokens, padded with the pad token's embedding or cut
to the prompt's length. The head reads the mean of the last hidden states over the text's
own tokens (the prompt acts through attention).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from llmbo.errors import InputError
from llmbo.hpo.task import LoraTask

__all__ = ["SoftPromptModel"]


class SoftPromptModel(nn.Module):
    """PEFT prompt tuning of ``task.model`` plus a linear task head.

    Args:
        task: Model name or path, kind (regression: one output; classification: one per
            class).
        num_virtual_tokens: Soft-prompt vectors.
        device: Where the model runs.
    """

    def __init__(self, task: LoraTask, num_virtual_tokens: int, device: torch.device) -> None:
        super().__init__()
        from peft import PromptTuningConfig, TaskType, get_peft_model

        from llmbo.encoders.transformer import load_pretrained

        backbone, tokenizer, config = load_pretrained(task.model)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        self.tokenizer = tokenizer
        hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0))
        peft_config = PromptTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=num_virtual_tokens
        )
        self.backbone = get_peft_model(backbone, peft_config)
        self.n_virtual = int(num_virtual_tokens)
        outputs = 1 if task.kind == "regression" else len(task.classes)
        self.head = nn.Linear(hidden, outputs)
        self.to(device)
        self.device = device
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        vocab = self.word_embeddings.shape[0]
        allowed = torch.ones(vocab, dtype=torch.bool)
        allowed[[i for i in special if 0 <= i < vocab]] = False
        self.allowed_tokens = allowed.to(device)
        # The input embeddings are frozen: normalise them once, not at every projection
        # (the projection runs after every optimiser step).
        with torch.no_grad():
            unit = nn.functional.normalize(self.word_embeddings.detach().float(), dim=-1)
        self.register_buffer("_unit_embeddings", unit, persistent=False)
        """Vocabulary tokens a projection may choose (all but the special tokens)."""

    # ------------------------------------------------------------------ the soft prompt
    @property
    def prompt(self) -> nn.Parameter:
        """The trainable ``num_virtual_tokens x hidden`` soft prompt."""
        return self.backbone.prompt_encoder["default"].embedding.weight  # type: ignore[no-any-return,union-attr,return-value]

    def set_prompt(self, vectors: Tensor) -> None:
        """Overwrite the soft prompt with ``vectors`` (``num_virtual_tokens x hidden``)."""
        if vectors.shape != self.prompt.shape:
            raise InputError(
                f"A soft prompt here is {tuple(self.prompt.shape)}; got {tuple(vectors.shape)}."
            )
        with torch.no_grad():
            self.prompt.copy_(vectors.to(self.prompt))

    @property
    def word_embeddings(self) -> Tensor:
        """The frozen input embedding matrix (``vocab x hidden``)."""
        return self.backbone.word_embeddings.weight  # type: ignore[no-any-return,union-attr,return-value]

    def nearest_tokens(self, vectors: Tensor | None = None) -> list[int]:
        """For each vector (default: the soft prompt), the vocabulary token with the most
        cosine-similar input embedding (largest cosine; special tokens never chosen)."""
        vectors = self.prompt if vectors is None else vectors
        with torch.no_grad():
            emb: Tensor = self._unit_embeddings  # type: ignore[assignment]
            v = nn.functional.normalize(vectors.detach().float().to(emb.device), dim=-1)
            similarity = v @ emb.T
            similarity[:, ~self.allowed_tokens] = -torch.inf
            return similarity.argmax(dim=-1).tolist()  # type: ignore[no-any-return]

    def decode(self, token_ids: list[int]) -> str:
        """Readable text of prompt tokens."""
        return str(self.tokenizer.decode(token_ids, skip_special_tokens=True)).strip()

    def text_tokens(self, text: str) -> list[int]:
        """Vocabulary tokens of ``text`` (no special tokens; unknown tokens dropped)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        unk = self.tokenizer.unk_token_id
        return [int(i) for i in ids if i != unk]

    def token_vectors(self, token_ids: list[int]) -> Tensor:
        """Word embeddings of ``token_ids``, cut or padded (pad token embedding) to the
        soft prompt's length."""
        ids = list(token_ids)[: self.n_virtual]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = ids + [int(pad)] * (self.n_virtual - len(ids))
        index = torch.tensor(ids, dtype=torch.long, device=self.word_embeddings.device)
        return self.word_embeddings[index].detach().clone()

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        states = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        states = states[:, -input_ids.shape[1] :]  # the text's positions (prompt first)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(pooled.to(self.head.weight.dtype))  # type: ignore[no-any-return]

    def trainable_state(self) -> dict[str, Any]:
        """Copies of what training changes: the soft prompt and the head."""
        return {
            "prompt": self.prompt.detach().cpu().clone(),
            "head": {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()},
        }

    def load_trainable_state(self, state: dict[str, Any]) -> None:
        self.set_prompt(state["prompt"])
        self.head.load_state_dict({k: v.to(self.device) for k, v in state["head"].items()})
