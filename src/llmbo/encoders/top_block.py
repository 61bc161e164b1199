"""The top block of :class:`~llmbo.encoders.transformer.TextEncoder`: the last layers of a
transformer's layer stack, run alone on the hidden states that enter them.

The frozen lower layers run once per pool (the encoder caches what they hand over); a
training step or a pool pass then runs only the top block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from llmbo.encoders.tokens import TokenizedPool

__all__ = ["TopBlock", "eval_mode", "with_soft_tokens"]


class StopForward(Exception):
    """Raised by a hook to abandon a forward pass once the needed activations are captured."""


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[None]:
    """Dropout off (LoRA's included) for the duration; each module's mode is restored."""
    modes = [(module, module.training) for module in net.modules()]
    net.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.train(training)


def with_soft_tokens(
    hidden: Tensor, mask: Tensor, ids: Tensor, soft: Tensor, pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """``hidden``, ``mask`` and ``ids`` of a batch with the soft tokens ``soft`` appended
    to every row (attended to; their ids are ``pad_id``)."""
    n_rows, n_soft = hidden.shape[0], soft.shape[0]
    hidden = torch.cat([hidden, soft.unsqueeze(0).expand(n_rows, -1, -1).to(hidden.dtype)], dim=1)
    ones = torch.ones(n_rows, n_soft, dtype=mask.dtype, device=mask.device)
    mask = torch.cat([mask, ones], dim=1)
    ids = torch.cat([ids, torch.full_like(ones, pad_id)], dim=1)
    return hidden, mask, ids


class TopBlock:
    """The layers ``split`` and up of the layer stack ``stack_name`` of ``net``."""

    def __init__(self, net: nn.Module, stack_name: str, split: int) -> None:
        self.net = net
        self.stack_name = stack_name
        self.split = split

    @torch.no_grad()
    def input_states(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Hidden states entering the top block for one batch (the lower layers only run)."""
        captured: list[Tensor] = []

        def grab(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured.append(args[0] if args else kwargs["hidden_states"])
            raise StopForward

        layers = self.net.get_submodule(self.stack_name)
        handle = layers[self.split].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            with contextlib.suppress(StopForward):
                self.net(input_ids=ids, attention_mask=mask, use_cache=False)
        finally:
            handle.remove()
        return captured[0]

    @torch.no_grad()
    def lower_states(
        self,
        tokens: TokenizedPool,
        index: Tensor,
        batches: Iterable[Tensor],
        *,
        hidden_size: int,
        device: torch.device,
        store: torch.dtype,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    ) -> Tensor:
        """Hidden states entering the top block for rows ``index`` (in ``batches``),
        ``len(index) x width x hidden_size`` as ``store``, zero after each text."""
        width = int(tokens.lengths[index].max())
        out = torch.zeros(len(index), width, hidden_size, dtype=store, device=device)
        position = {int(i): k for k, i in enumerate(index.tolist())}
        for batch in batches:
            ids, mask = tokens.tokens(batch, device)
            with autocast():
                hidden = self.input_states(ids, mask)
            rows = torch.tensor([position[int(i)] for i in batch], device=device)
            out[rows, : ids.shape[1]] = hidden.to(store)
        return out

    @contextlib.contextmanager
    def alone(self, hidden: Tensor) -> Iterator[None]:
        """Temporarily shrink the layer stack to the top block and feed it ``hidden``."""
        parent_name, _, attr = self.stack_name.rpartition(".")
        parent = self.net.get_submodule(parent_name) if parent_name else self.net
        full = getattr(parent, attr)

        def inject(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                return (hidden, *args[1:]), kwargs
            kwargs["hidden_states"] = hidden
            return args, kwargs

        handle = full[self.split].register_forward_pre_hook(inject, with_kwargs=True)
        setattr(parent, attr, nn.ModuleList(list(full)[self.split :]))
        try:
            yield
        finally:
            setattr(parent, attr, full)
            handle.remove()

    @torch.no_grad()
    def reproduces_model(self, ids: Tensor, mask: Tensor) -> bool:
        """Whether the top block fed the hidden states entering it reproduces the full
        forward pass on this batch, in float32 without dropout (so, with fresh LoRA, both
        passes are the pretrained model)."""
        with eval_mode(self.net):
            hidden = self.input_states(ids, mask)
            full = self.net(input_ids=ids, attention_mask=mask, use_cache=False)
            with self.alone(hidden):
                top = self.net(input_ids=ids, attention_mask=mask, use_cache=False)
        keep = mask.bool()
        expected = full.last_hidden_state.float()[keep]
        error = float((top.last_hidden_state.float()[keep] - expected).abs().max())
        return error <= 1e-4 * (float(expected.abs().max()) or 1.0)
