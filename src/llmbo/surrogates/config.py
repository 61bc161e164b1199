"""Typed settings per registered surrogate, stored in studies as JSON.

Each registered surrogate owns one small config dataclass (the pattern of PEFT's
``LoraConfig``): the fields it reads and nothing else, checked where they are set. A
config serialises with :meth:`SurrogateConfig.to_dict`, rebuilds with
:func:`surrogate_config_from_dict`, and takes dotted overrides with
:meth:`SurrogateConfig.updated` (``{"deep_kernel.steps": 30, "lora.r": 8}``), which is
what ``--set KEY=VALUE`` on the command line applies. LoRA settings are keyword arguments
of :class:`peft.LoraConfig` (``r``, ``lora_alpha``, ``lora_dropout``, ``use_rslora``,
``target_modules``, ...), checked against PEFT's own fields.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from llmbo.encoders.transformer import EncoderConfig
from llmbo.errors import InputError
from llmbo.registry import Registry
from llmbo.surrogates.deep_kernel import DeepKernelConfig

__all__ = [
    "LORA_DEFAULTS",
    "SURROGATE_CONFIGS",
    "DeepKernelSurrogateConfig",
    "FeatureGPConfig",
    "LoraSurrogateConfig",
    "RandomConfig",
    "StaticConfig",
    "SurrogateConfig",
    "TokenSurrogateConfig",
    "from_legacy_spec",
    "lora_settings",
    "parse_setting",
    "parse_value",
    "surrogate_config",
    "surrogate_config_from_dict",
]

#: GOLLuM's adapter defaults, as ``peft.LoraConfig`` keyword arguments.
LORA_DEFAULTS: dict[str, Any] = {
    "r": 4,
    "lora_alpha": 16.0,
    "lora_dropout": 0.0,
    "use_rslora": True,
}
#: ``peft.LoraConfig`` fields llmbo sets itself (the adapters go on the top block).
LORA_MANAGED = frozenset({"layers_to_transform", "layers_pattern", "task_type"})


def lora_settings(given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``given`` ``peft.LoraConfig`` keyword arguments over :data:`LORA_DEFAULTS`, each
    checked to be a field of ``peft.LoraConfig`` that llmbo does not set itself."""
    out = {**LORA_DEFAULTS, **dict(given or {})}
    try:
        import peft
    except ImportError:  # checked again where the adapters are built
        return out
    known = {f.name for f in dataclasses.fields(peft.LoraConfig)} - LORA_MANAGED
    unknown = sorted(set(out) - known)
    if unknown:
        raise InputError(
            f"Unknown LoRA setting(s) {unknown}: lora takes peft.LoraConfig arguments, e.g. "
            f"{sorted(LORA_DEFAULTS)} or target_modules."
        )
    return out


@dataclass
class SurrogateConfig:
    """Base of the per-surrogate configs: a registered ``name`` and the fields it reads.

    Subclasses list the registry names they serve in ``NAMES``.
    """

    NAMES: ClassVar[tuple[str, ...]] = ()
    name: str = ""

    def __post_init__(self) -> None:
        if self.name not in self.NAMES:
            raise InputError(
                f"{type(self).__name__} configures {', '.join(self.NAMES)}, not {self.name!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, settings: Mapping[str, Any]) -> SurrogateConfig:
        """A copy with dotted-path ``settings`` applied (``{"deep_kernel.lr": 1e-3}``).

        Dataclass fields are checked by name (a typo raises :class:`InputError` naming
        the known ones); entries of dict fields such as ``featurizer`` or ``lora`` are free
        here and checked by their owner.
        """
        changes: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(self)} - {"name"}
        for key, value in settings.items():
            parts = [p for p in str(key).split(".") if p]
            if not parts:
                raise InputError(f"Empty setting name in {dict(settings)!r}.")
            head = parts[0]
            if head == "name":
                raise InputError("The surrogate itself is not a setting; choose it by name.")
            if head not in names:
                raise InputError(
                    f"Unknown setting {key!r} for the {self.name} surrogate: "
                    f"{type(self).__name__} has no field {head!r}; known: {sorted(names)}."
                )
            current = changes.get(head, getattr(self, head))
            changes[head] = (
                _set_path(current, parts[1:], value, str(key), self.name) if parts[1:] else value
            )
        # One replace: cross-field rules see all the settings at once, in any order.
        try:
            return dataclasses.replace(self, **changes)
        except (TypeError, ValueError) as exc:
            raise InputError(f"Bad settings {dict(settings)!r}: {exc}") from exc


def _set_path(obj: Any, path: list[str], value: Any, full: str, owner: str) -> Any:
    """A copy of ``obj`` (dataclass or dict) with ``path`` set to ``value``."""
    head, rest = path[0], path[1:]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = {f.name for f in dataclasses.fields(obj)} - {"name"}
        if head not in names:
            raise InputError(
                f"Unknown setting {full!r} for the {owner} surrogate: {type(obj).__name__} has "
                f"no field {head!r}; known: {sorted(names)}."
            )
        current = getattr(obj, head)
        new = _set_path(current, rest, value, full, owner) if rest else value
        try:
            return dataclasses.replace(obj, **{head: new})
        except (TypeError, ValueError) as exc:
            raise InputError(f"Bad value {value!r} for {full!r}: {exc}") from exc
    if isinstance(obj, dict):
        out = dict(obj)
        out[head] = _set_path(out.get(head, {}), rest, value, full, owner) if rest else value
        return out
    raise InputError(f"Cannot set {full!r}: {path[0]!r} is inside a {type(obj).__name__}.")


def _check_bool(config: Any, *names: str) -> None:
    for name in names:
        if not isinstance(getattr(config, name), bool):
            raise InputError(f"{name} must be true or false, got {getattr(config, name)!r}.")


def _check_count(config: Any, name: str, *, optional: bool = False) -> None:
    value = getattr(config, name)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{name} must be an integer >= 0, got {value!r}.")


@dataclass
class RandomConfig(SurrogateConfig):
    """Random search (no model; the optimizer uses the random proposer)."""

    NAMES: ClassVar[tuple[str, ...]] = ("random",)
    name: str = "random"


@dataclass
class FeatureGPConfig(SurrogateConfig):
    """A GP on fixed features of a registered featurizer (``drfp``, ``morgan``, ``onehot``,
    ``components``, ``numeric``: standard BO on a parameter grid's numeric columns).

    Attributes:
        featurizer: Keyword arguments of the featurizer (column names, sizes).
        kernel: ``matern``, ``matern-ard``, ``tanimoto`` or ``components`` (``None``: the
            surrogate's default).
        noise_prior: BoTorch's default LogNormal(-4, 1) prior on the noise variance (see
            :func:`~llmbo.surrogates.likelihood.gaussian_likelihood`).
    """

    NAMES: ClassVar[tuple[str, ...]] = ("drfp", "morgan", "onehot", "components", "numeric")
    name: str = "onehot"
    featurizer: dict[str, Any] = field(default_factory=dict)
    kernel: str | None = None
    noise_prior: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_bool(self, "noise_prior")
        if not isinstance(self.featurizer, dict):
            raise InputError(f"featurizer takes keyword arguments, got {self.featurizer!r}.")


@dataclass
class _EncoderFields(SurrogateConfig):
    """Fields shared by the surrogates that read the candidates' texts with a transformer."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    deep_kernel: DeepKernelConfig = field(default_factory=DeepKernelConfig)
    soft_tokens: int = 0
    top_layers: int | None = None
    cache_hidden_states: bool = True
    noise_prior: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_count(self, "soft_tokens")
        _check_count(self, "top_layers", optional=True)
        _check_bool(self, "cache_hidden_states", "noise_prior")


@dataclass
class StaticConfig(_EncoderFields):
    """Frozen transformer embeddings under a fixed-feature GP (``static``); with soft tokens
    the tokens train by marginal likelihood (``deep_kernel`` settings, no projection head).

    Attributes:
        kernel: Kernel of the fixed-feature GP (``None``: Matérn).
    """

    NAMES: ClassVar[tuple[str, ...]] = ("static",)
    name: str = "static"
    kernel: str | None = None


@dataclass
class DeepKernelSurrogateConfig(_EncoderFields):
    """A deep kernel on a frozen transformer plus a trained projection head (``projection``).

    Attributes:
        encoder: Transformer loading/running options.
        deep_kernel: Training settings.
        soft_tokens: Learnable soft tokens appended to every input.
        top_layers: Layers in the trainable/cached top block (``None``: 25 %, at least one).
        cache_hidden_states: Cache frozen-layer outputs (``False``: naive reference path).
        side_features: A registered featurizer (e.g. ``onehot``, ``drfp``) whose kernel is
            added to the learned-feature kernel: Tanimoto, or the component kernel for
            ``components``.
        side_featurizer: Keyword arguments of that featurizer.
        noise_prior: BoTorch's default LogNormal(-4, 1) prior on the noise variance.
    """

    NAMES: ClassVar[tuple[str, ...]] = ("projection",)
    name: str = "projection"
    side_features: str | None = None
    side_featurizer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.deep_kernel.side_fit != "joint" and self.side_features is None:
            raise InputError(
                f"deep_kernel.side_fit={self.deep_kernel.side_fit!r} fits a side kernel first: "
                "set side_features too (CLI --side-features)."
            )


@dataclass
class LoraSurrogateConfig(DeepKernelSurrogateConfig):
    """GOLLuM's LoRA deep kernel (``lora``): adapters on the transformer's top block.

    Attributes:
        lora: ``peft.LoraConfig`` keyword arguments over :data:`LORA_DEFAULTS` (``r``,
            ``lora_alpha``, ``lora_dropout``, ``use_rslora``, ``target_modules``...).
        top_module: Train only this submodule at the end of the last layer (``"output"``
            for BERT-style models); ``"auto"`` picks ``"output"`` for BERT-family models
            unless soft tokens or ``top_layers`` are set; ``None`` trains whole top layers.
    """

    NAMES: ClassVar[tuple[str, ...]] = ("lora",)
    name: str = "lora"
    lora: dict[str, Any] = field(default_factory=lambda: dict(LORA_DEFAULTS))
    top_module: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.lora, dict):
            raise InputError(f"lora takes peft.LoraConfig arguments, got {self.lora!r}.")
        self.lora = lora_settings(self.lora)


@dataclass
class TokenSurrogateConfig(SurrogateConfig):
    """Frozen statement states + a learnable token + projection + GP (``token``), the
    surrogate of the LoRA hyperparameter search (:mod:`llmbo.surrogates.token`).

    Attributes:
        encoder: Transformer loading/running options; statements are the parts of a
            text between ``encoder.segment_separator`` (default: lines).
        deep_kernel: Training settings of the token, projection head and GP.
        token: Train the token (``False``: the "no token" ablation).
        in_context: Read whole prompts in one pass (statements pooled in context) instead
            of each distinct statement once (one pass per prompt: slow on large grids).
        side_features: A registered featurizer whose kernel is added to the learned one,
            e.g. ``numeric`` (the configuration's numbers, Matérn-ARD): the prompt then
            models what the numbers leave unexplained.
        side_featurizer: Keyword arguments of that featurizer.
        noise_prior: BoTorch's default LogNormal(-4, 1) prior on the noise variance.
    """

    NAMES: ClassVar[tuple[str, ...]] = ("token",)
    name: str = "token"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    deep_kernel: DeepKernelConfig = field(default_factory=DeepKernelConfig)
    token: bool = True
    in_context: bool = False
    side_features: str | None = None
    side_featurizer: dict[str, Any] = field(default_factory=dict)
    noise_prior: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_bool(self, "token", "in_context", "noise_prior")
        if self.deep_kernel.side_fit != "joint" and self.side_features is None:
            raise InputError(
                f"deep_kernel.side_fit={self.deep_kernel.side_fit!r} fits a side kernel first: "
                "set side_features too."
            )


#: Config class of every registered surrogate name.
SURROGATE_CONFIGS: Registry[type[SurrogateConfig]] = Registry("surrogate")
for _cls in (
    RandomConfig,
    FeatureGPConfig,
    StaticConfig,
    DeepKernelSurrogateConfig,
    LoraSurrogateConfig,
    TokenSurrogateConfig,
):
    for _name in _cls.NAMES:
        SURROGATE_CONFIGS.register(_name)(_cls)

#: Nested config fields and how they rebuild from stored dicts.
_NESTED = {"encoder": lambda d: EncoderConfig(**d), "deep_kernel": DeepKernelConfig.from_dict}


def surrogate_config(name: str = "lora", **fields: Any) -> SurrogateConfig:
    """The config of the registered surrogate ``name`` with ``fields`` set (the others at
    their defaults); a field that surrogate does not read raises :class:`InputError`."""
    cls = SURROGATE_CONFIGS.get(name)
    known = {f.name for f in dataclasses.fields(cls)} - {"name"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise InputError(
            f"The {name} surrogate has no setting(s) {unknown}; it takes {sorted(known)}."
        )
    try:
        return cls(name=name.lower(), **fields)
    except TypeError as exc:
        raise InputError(f"Bad settings for the {name} surrogate: {exc}") from exc


def surrogate_config_from_dict(data: Mapping[str, Any]) -> SurrogateConfig:
    """Rebuild a config from :meth:`SurrogateConfig.to_dict` output."""
    data = dict(data)
    if "name" not in data:
        raise InputError(f"A surrogate config needs a 'name'; got {data!r}.")
    name = str(data.pop("name"))
    for key, build in _NESTED.items():
        if isinstance(data.get(key), dict):
            data[key] = build(data[key])
    return surrogate_config(name, **data)


#: Keys of the 0.1.0 ``SurrogateSpec.lora`` dict and their ``peft.LoraConfig`` names.
_LEGACY_LORA_KEYS = {"alpha": "lora_alpha", "dropout": "lora_dropout"}


def from_legacy_spec(data: Mapping[str, Any]) -> dict[str, Any]:
    """A 0.1.0 ``SurrogateSpec`` dict (every field for every surrogate) as today's config
    dict of its surrogate: the fields that surrogate never read are dropped, LoRA keys
    renamed to PEFT's; what was stored is otherwise kept (and checked on rebuilding)."""
    data = dict(data)
    name = str(data.get("name", "lora"))
    cls = SURROGATE_CONFIGS.get(name)
    keep = {f.name for f in dataclasses.fields(cls)}
    out = {k: v for k, v in data.items() if k in keep}
    if name == "random" and data.get("noise_prior"):
        raise InputError("noise_prior applies to GP surrogates, not to random search.")
    if "lora" in out:
        old = dict(out["lora"] or {})
        out["lora"] = {
            _LEGACY_LORA_KEYS.get(k, k): v
            for k, v in old.items()
            if not (k == "target_modules" and v is None)
        }
    return out


def parse_value(text: str) -> Any:
    """A ``KEY=VALUE`` value: a Python literal, true/false, none/null, or else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low in ("none", "null"):
            return None
        return text


def parse_setting(item: str, option: str = "--set") -> tuple[str, Any]:
    """``"deep_kernel.steps=30"`` -> ``("deep_kernel.steps", 30)``."""
    if "=" not in item:
        raise InputError(f"{option} needs KEY=VALUE, got {item!r}.")
    key, raw = item.split("=", 1)
    if not key.strip():
        raise InputError(f"{option} {item!r} names no setting.")
    return key.strip(), parse_value(raw.strip())
