"""The top-module path of :class:`~llmbo.encoders.transformer.TextEncoder`.

With ``top_module`` the trained part is one submodule at the end of the last layer (BERT's
``output``: a linear layer with LoRA, the residual and a layer norm). Its inputs, and the
outputs of the frozen linear layers that LoRA adapts inside it, are cached for every real
token of the pool, so a training step only runs the low-rank adapter path and what follows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from llmbo.encoders.top_block import StopForward
from llmbo.errors import ModelLoadError

if TYPE_CHECKING:
    from llmbo.encoders.tokens import TokenizedPool

__all__ = ["TopModuleCache", "adapted_base_layers"]

#: ``autocast()``: the context the transformer computes in.
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


def adapted_base_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Frozen base linear layers of the LoRA adapters inside ``module``, by name."""
    from peft.tuners.lora import LoraLayer

    return {
        name: layer.get_base_layer()
        for name, layer in module.named_modules()
        if isinstance(layer, LoraLayer)
    }


@contextlib.contextmanager
def _frozen_outputs(layers: dict[str, nn.Module], outputs: dict[str, Tensor]) -> Iterator[None]:
    """Make each frozen linear layer return its cached output instead of recomputing it."""
    for name, value in outputs.items():
        layers[name].forward = lambda *args, _value=value, **kwargs: _value  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name in outputs:
            del layers[name].forward


class TopModuleCache:
    """The cached inputs of a top module and frozen outputs of its adapted linear layers.

    Only real tokens are kept, packed row after row (the module works token by token): the
    tokens of pool row ``r`` start at ``offsets[r]``.
    """

    def __init__(self) -> None:
        #: The module's inputs (positional order) and frozen base outputs, by layer name.
        self.inputs: list[Tensor] = []
        self.bases: dict[str, Tensor] = {}
        self.offsets = torch.zeros(1, dtype=torch.long)
        self._gathered: tuple[bytes, list[Tensor], dict[str, Tensor]] | None = None
        self._base_layers: dict[str, nn.Module] = {}

    @torch.no_grad()
    def fill(
        self,
        net: nn.Module,
        module: nn.Module,
        tokens: TokenizedPool,
        batches: Iterable[Tensor],
        *,
        index: Tensor,
        name: str | None,
        device: torch.device,
        store: torch.dtype,
        autocast: Autocast,
    ) -> None:
        """Cache the inputs of ``module`` (the top module ``name`` of ``net``) and the frozen
        outputs of the layers it adapts for rows ``index`` (in ``batches``), as ``store``.

        A frozen layer's output is cached when its input is one of the module's inputs
        (then it cannot change during training); other frozen layers are recomputed.
        """
        bases = adapted_base_layers(module)
        lengths = tokens.lengths[index]
        offsets = torch.zeros(int(index.max()) + 2, dtype=torch.long)
        offsets[index + 1] = lengths
        offsets = offsets.cumsum(0)
        seen: dict[str, Any] = {}

        def grab_inputs(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if kwargs or not all(isinstance(a, Tensor) and a.dim() == 3 for a in args):
                raise ModelLoadError(
                    f"top_module {name!r} ({type(_m).__name__}) is called "
                    "with inputs that are not per-token tensors; it cannot be cached. "
                    "Use top_module=None (the whole top layer)."
                )
            seen["inputs"] = args

        def grab_base(name: str) -> Any:
            def hook(_m: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
                if any(args[0] is a for a in seen.get("inputs", ())):
                    seen[name] = output

            return hook

        def stop(*_: Any) -> None:
            raise StopForward

        handles = [module.register_forward_pre_hook(grab_inputs, with_kwargs=True)]
        handles += [b.register_forward_hook(grab_base(n)) for n, b in bases.items()]
        handles.append(module.register_forward_hook(stop))
        inputs: list[Tensor] = []
        outputs: dict[str, Tensor] = {}
        total = int(offsets[-1])
        try:
            for batch in batches:
                ids, mask = tokens.tokens(batch, device)
                seen.clear()
                with autocast(), contextlib.suppress(StopForward):
                    net(input_ids=ids, attention_mask=mask, use_cache=False)
                if not inputs:  # allocate on the first batch (widths are now known)
                    inputs = [
                        torch.empty(total, a.shape[-1], dtype=store, device=device)
                        for a in seen["inputs"]
                    ]
                    outputs = {
                        k: torch.empty(total, v.shape[-1], dtype=store, device=device)
                        for k, v in seen.items()
                        if k != "inputs"
                    }
                real = mask.bool().to(device)
                slots = tokens.token_slots(batch, offsets).to(device)
                for cache, value in zip(inputs, seen["inputs"], strict=True):
                    cache[slots] = value[real].to(store)
                for layer, cache in outputs.items():
                    cache[slots] = seen[layer][real].to(store)
        finally:
            for handle in handles:
                handle.remove()
        self.inputs, self.bases = inputs, outputs
        self._base_layers = {layer: bases[layer] for layer in outputs}
        self.offsets = offsets
        self._gathered = None

    def gather(
        self, index: Tensor, tokens: TokenizedPool, device: torch.device
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Cached inputs and frozen outputs of rows ``index`` (the last call's are reused)."""
        key = index.numpy().tobytes()
        if self._gathered is not None and self._gathered[0] == key:
            return self._gathered[1], self._gathered[2]
        slots = tokens.token_slots(index, self.offsets).to(device)
        # Stored in the compute dtype already (the encoder's cache_dtype): no conversion here.
        inputs = [c[slots] for c in self.inputs]
        frozen = {n: c[slots] for n, c in self.bases.items()}
        self._gathered = (key, inputs, frozen)
        return inputs, frozen

    def run(
        self,
        module: nn.Module,
        index: Tensor,
        tokens: TokenizedPool,
        device: torch.device,
        autocast: Autocast,
    ) -> Tensor:
        """The output of ``module`` for the real tokens of rows ``index`` (packed)."""
        inputs, frozen = self.gather(index, tokens, device)
        with _frozen_outputs(self._base_layers, frozen), autocast():
            out = module(*(x.unsqueeze(0) for x in inputs))
        out = out[0] if isinstance(out, tuple) else out
        return out.squeeze(0)

    @torch.no_grad()
    def check(
        self,
        net: nn.Module,
        module: nn.Module,
        tokens: TokenizedPool,
        *,
        name: str | None,
        device: torch.device,
        autocast: Autocast,
        n_rows: int = 4,
    ) -> None:
        """The cached path must reproduce the full forward of ``net`` (fresh LoRA: B = 0)."""
        rows = torch.arange(min(n_rows, len(tokens.lengths)))
        ids, mask = tokens.tokens(rows, device)
        with autocast():
            full = net(input_ids=ids, attention_mask=mask, use_cache=False)
        keep = mask.bool()
        expected = full.last_hidden_state.float()[keep]
        got = self.run(module, rows, tokens, device, autocast).float()
        error = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
        scale = float(expected.abs().max()) or 1.0
        tolerance = 1e-4 if isinstance(autocast(), contextlib.nullcontext) else 5e-2
        if not error <= tolerance * scale:
            raise ModelLoadError(
                f"top_module {name!r} does not produce this model's output "
                f"({type(net).__name__}: max difference {error:.3g}); something after it "
                "changes the hidden states. Use top_module=None (the whole top layer)."
            )
