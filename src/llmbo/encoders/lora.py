"""LoRA adapters on the trained part of :class:`~llmbo.encoders.transformer.TextEncoder`:
the top block's layers, or only the linear layers inside its top module."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from torch import nn

from llmbo._imports import require
from llmbo.errors import ModelLoadError

__all__ = ["inject_lora", "linear_layers"]


def linear_layers(
    net: nn.Module, prefixes: Sequence[str], suffixes: Sequence[str] | None = None
) -> list[str]:
    """Full names of the torch ``Linear`` layers at or under the modules named ``prefixes``
    (only those ending like one of ``suffixes``, when given)."""
    return [
        name
        for name, module in net.named_modules()
        if isinstance(module, nn.Linear)
        and any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)
        and (suffixes is None or any(name.endswith(suffix) for suffix in suffixes))
    ]


def inject_lora(
    net: nn.Module,
    lora: dict[str, Any],
    *,
    model_type: str,
    stack_name: str,
    split: int,
    n_layers: int,
    top_module: tuple[str, str] | None = None,
) -> nn.Module:
    """``net`` with LoRA adapters (``lora``: ``peft.LoraConfig`` arguments over the defaults)
    on the layers ``split`` and up of its layer stack ``stack_name``, or only on the linear
    layers inside ``top_module`` (its name and full path) when given."""
    peft = require("peft", "LoRA adapters")
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    from llmbo.surrogates.config import lora_settings

    lora = lora_settings(lora)
    targets: list[str] | str | None = lora.pop("target_modules", None)
    placement: dict[str, Any] = {
        "layers_to_transform": list(range(split, n_layers)),
        "layers_pattern": stack_name.split(".")[-1],
    }
    if top_module is not None:
        name, prefix = top_module
        inside = linear_layers(net, [prefix], targets)
        if not inside:
            raise ModelLoadError(
                f"top_module {name!r} ({prefix}) holds no linear layer "
                f"to adapt{'' if targets is None else f' named like {targets!r}'}."
            )
        targets, placement = inside, {}
    elif targets is None:
        targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model_type)
        if targets is None or isinstance(targets, str):
            # No list of PEFT defaults for this model type (e.g. MPNet), or a regex that
            # PEFT cannot combine with layers_to_transform: every linear layer of the
            # top block, named in full.
            top = [f"{stack_name}.{i}" for i in range(split, n_layers)]
            targets = linear_layers(net, top)
            if not targets:
                raise ModelLoadError(
                    f"The top {n_layers - split} layer(s) of this model hold no torch Linear "
                    "layer to adapt; set the LoRA setting target_modules to names of its "
                    "layers that PEFT can adapt."
                )
            placement = {}
    peft_config = peft.LoraConfig(**lora, target_modules=targets, **placement)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers deprecation inside PEFT
        wrapped = peft.get_peft_model(net, peft_config)
    n_adapted = sum(1 for m in net.modules() if isinstance(m, peft.tuners.lora.LoraLayer))
    if n_adapted == 0:
        raise ModelLoadError(
            f"LoRA found no target modules {targets!r} in the top {n_layers - split} layers; "
            "set the LoRA setting target_modules to names of linear layers of this model."
        )
    return wrapped.base_model.model
