"""Option groups and helpers shared by ``llmbo run``, ``suggest``, ``observe`` and ``status``.

Heavy modules (torch, transformers, the optimizer) are imported inside functions so that
``llmbo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmbo._validate import MAX_SEED, check_seed, check_study_name, redact_passwords
from llmbo.errors import InputError, LlmboError

logger = logging.getLogger("llmbo.cli")

if TYPE_CHECKING:
    from llmbo.acquisition import AcquisitionConfig
    from llmbo.datasets import ReactionPool
    from llmbo.optimizer import Optimizer
    from llmbo.presets import PresetChoice
    from llmbo.space import CandidateSpace
    from llmbo.storage import BaseStorage, StudyRecord
    from llmbo.surrogates.config import SurrogateConfig

ACQUISITIONS = ("logei", "ucb", "ts")


#: Fixed featurizers that read table columns: surrogates of their own and ``--side-features``.
FIXED_FEATURIZERS = ("onehot", "components", "drfp", "morgan")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _int(text: str) -> int:
    if re.fullmatch(r"\s*[+-]?[0-9]+\s*", text) is None:  # ASCII digits only
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}")
    return int(text)


def seed_int(text: str) -> int:
    """argparse type: a seed, an integer in [0, 2**63 - 1]."""
    try:
        return check_seed(_int(text))
    except (InputError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"must be a whole number between 0 and {MAX_SEED}, got {text!r}"
        ) from None


def study_name_arg(text: str) -> str:
    """argparse type: a non-empty study name."""
    try:
        return check_study_name(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def decode_separator(text: str) -> str:
    r"""A ``--segment-separator`` as typed: ``\n``, ``\t``, ``\r`` and ``\\`` stand for a
    newline, a tab, a carriage return and a backslash; every other character (any
    Unicode, e.g. ``' → '``) is taken as it is; any other backslash sequence is refused."""
    out: list[str] = []
    k = 0
    while k < len(text):
        ch = text[k]
        if ch != "\\":
            out.append(ch)
            k += 1
            continue
        nxt = text[k + 1 : k + 2]
        if nxt not in _ESCAPES:
            bad = "\\" + nxt
            raise InputError(
                f"--segment-separator {text!r}: '{bad}' is not an escape llmbo knows; "
                "use \\n (newline), \\t (tab), \\r or \\\\ (a backslash), or type the "
                "separator itself."
            )
        out.append(_ESCAPES[nxt])
        k += 2
    return "".join(out)


# ------------------------------------------------------------------------ option groups
def add_command(
    subparsers: Any,
    name: str,
    summary: str,
    description: str | None = None,
    examples: str | None = None,
) -> argparse.ArgumentParser:
    """Add the subcommand ``name``, with ``summary`` in ``llmbo --help``. With ``examples``
    (shown after the options) the description and examples keep their line breaks."""
    if examples is None:
        return subparsers.add_parser(name, help=summary, description=description)
    return subparsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_option_groups(
    parser: argparse.ArgumentParser, groups: dict[str, list[tuple[str, dict[str, Any]]]]
) -> None:
    """Add option groups given as ``{group: [(flag, add_argument keywords), ...]}``."""
    for group, options in groups.items():
        section = parser.add_argument_group(group)
        for flag, keywords in options:
            section.add_argument(flag, **keywords)


def add_space_options(parser: argparse.ArgumentParser, *, target: bool) -> None:
    """``--benchmark NAME`` or ``--table FILE --template T [--id-column C]`` (+ ``--target``)."""
    group = parser.add_argument_group("candidates")
    group.add_argument(
        "--benchmark",
        metavar="NAME",
        help="a packaged pool: the reaction pools bh1..bh5 or suzuki (target: yield), or "
        "the molecule pools esol (solubility) or freesolv (hydration free energy, minimised)",
    )
    group.add_argument(
        "--table", metavar="FILE", help="CSV, TSV or Parquet file, one row per candidate"
    )
    group.add_argument(
        "--template",
        help="text of each candidate: a format string over the table's columns, e.g. "
        "'{ligand} with {base} at {temp:.0f} C'; with --benchmark: the pool's own by default "
        "(names on reaction pools, smiles on molecule pools), or procedure or reaction "
        "(reaction pools) or names (molecule pools)",
    )
    if target:
        group.add_argument(
            "--target", metavar="COL", help="column holding the measured value (with --table)"
        )
    group.add_argument(
        "--id-column",
        metavar="COL",
        help="column with unique candidate ids (default: ids derived from the text)",
    )


def add_model_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Surrogate, model and acquisition options.

    With ``defaults=False`` every option defaults to ``None`` so a command can tell which
    ones were given (``llmbo suggest`` only uses them when it creates a study).
    """

    def d(value: Any) -> Any:
        return value if defaults else None

    group = parser.add_argument_group("model")
    _add_objective_options(group, d)
    _add_surrogate_options(group, d)
    _add_encoder_options(group)
    group.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="any other setting of the surrogate's config, as in `llmbo bench --set`: e.g. "
        "deep_kernel.lr=1e-3, lora.r=8, encoder.max_length=128, featurizer.n_bits=1024, or "
        "the acquisition (acquisition=ucb, acquisition.beta=0.5); repeatable; only when a "
        "study is created",
    )


def _add_objective_options(group: Any, d: Callable[[Any], Any]) -> None:
    """``--surrogate``, ``--model``, the acquisition, the seed and the direction."""
    group.add_argument(
        "--surrogate",
        default=d("components-or-lora"),
        help="a preset (see `llmbo presets`): components-or-lora (default: a GP on the "
        "components when every template column is categorical, else the LoRA deep kernel; "
        "the choice is logged), lora, projection, static, morgan, components, onehot, drfp, "
        "random...; presets find the columns they need in the table",
    )
    group.add_argument(
        "--model",
        default=d("minilm"),
        help="transformer: minilm (packaged default), a Hugging Face id or a local directory",
    )
    group.add_argument(
        "--acquisition",
        default=d("logei"),
        choices=ACQUISITIONS,
        help="acquisition function (default logei)",
    )
    group.add_argument(
        "--outcome-power",
        type=positive_float,
        default=None,
        metavar="P",
        help="fit the model to, and measure improvement on, the observed values scaled to "
        "[0, 1] (worst to best) and raised to P; 2 spreads out the best values (default: "
        "the preset's, else 1: the values as they are)",
    )
    group.add_argument(
        "--seed", type=seed_int, default=d(0), help="seed of every random choice (default 0)"
    )
    group.add_argument(
        "--minimize",
        action="store_true",
        default=d(False),
        help="minimise the target (default: maximise; with --benchmark the pool's own "
        "direction: freesolv is minimised)",
    )


def _add_surrogate_options(group: Any, d: Callable[[Any], Any]) -> None:
    """Deep-kernel and fixed-feature options: soft tokens, the adapted module, training
    steps, fingerprint columns, side features and the noise prior."""
    group.add_argument(
        "--soft-tokens",
        type=non_negative_int,
        default=None,
        help="learnable soft tokens (default 0)",
    )
    group.add_argument(
        "--top-module",
        metavar="NAME",
        default=None,
        help="lora only: adapt only this submodule at the end of the last layer (e.g. 'output' "
        "in BERT-style models such as MiniLM; its inputs are cached, so a fit takes seconds "
        "on a CPU); 'auto' (the lora preset's) picks 'output' for BERT-family models; "
        "'none': LoRA on whole top layers",
    )
    group.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="deep-kernel training steps per fit (default: the library's)",
    )
    group.add_argument(
        "--fingerprint-columns",
        metavar="COLS",
        default=None,
        help="comma-separated table columns for the drfp (one reaction-SMILES column), morgan "
        "(SMILES columns), onehot and components surrogates or --side-features; benchmark "
        "pools know their own",
    )
    group.add_argument(
        "--side-features",
        choices=FIXED_FEATURIZERS,
        default=None,
        help="projection/lora only: add a kernel on these fixed features of each candidate to "
        "the deep kernel (columns from --fingerprint-columns; benchmark pools know their "
        "own): a Tanimoto kernel, which for onehot counts shared components; components adds "
        "one categorical kernel per component to that (research/LOG.md)",
    )
    group.add_argument(
        "--side-fit",
        choices=("joint", "fixed"),
        default=None,
        help="with --side-features: joint (default) trains the side kernel with the network; "
        "fixed first fits a GP on the side features alone, starts from it and keeps its "
        "kernel as fitted, so the LLM kernel learns what it leaves unexplained",
    )
    group.add_argument(
        "--noise-prior",
        action="store_true",
        default=d(False),
        help="put BoTorch's default LogNormal(-4, 1) prior on the GP's noise variance and "
        "start the noise at its mode, 0.0067 (default: no prior, only a floor of 1e-4); see "
        "research/LOG.md, eleventh round",
    )


def _add_encoder_options(group: Any) -> None:
    """How the transformer reads the texts: pooling, segments, remote code, device."""
    group.add_argument(
        "--pooling",
        choices=("mean", "cls", "last", "segments"),
        default=None,
        help="how token states become one vector: mean, cls, last, or segments (one mean per "
        "part of the text between --segment-separator, concatenated); default: segments for "
        "--benchmark reaction pools, mean otherwise",
    )
    group.add_argument(
        "--segment-separator",
        default=None,
        help="separator of the text's parts for --pooling segments (default: newline; the "
        "benchmark templates know their own)",
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=None,
        help="allow a model that ships its own Python code to run it (transformers' "
        "trust_remote_code); never taken from a stored study without this option",
    )
    group.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1... (default: CUDA when available)"
    )


def add_study_options(parser: Any, *, required: bool) -> None:
    """``--study PATH`` (SQLite file or SQLAlchemy URL) and ``--study-name``."""
    parser.add_argument(
        "--study",
        metavar="PATH",
        required=required,
        help="SQLite file (or SQLAlchemy URL) that keeps the study between calls",
    )
    parser.add_argument(
        "--study-name",
        type=study_name_arg,
        default="default",
        help="name of the study in that file (default: default)",
    )


#: ``--warm-start`` choices: random rows (today's initial design) or an LLM's proposals.
WARM_STARTS = ("random", "llm")
#: ``--llm-backend`` choices (see :mod:`llmbo.llm`).
LLM_BACKENDS = ("local", "openai")
#: Options of the LLM warm start; they apply with ``--warm-start llm`` only.
LLM_OPTIONS = ("llm_backend", "llm_model", "llm_base_url", "llm_api_key_env")


def add_warm_start_options(parser: argparse.ArgumentParser, *, n_initial: bool) -> None:
    """``--warm-start {random,llm}`` and the LLM's ``--llm-*`` options (``suggest`` also
    gets ``--n-initial``; ``run`` has its own). Fixed when a study is created."""
    group = parser.add_argument_group("warm start")
    group.add_argument(
        "--warm-start",
        choices=WARM_STARTS,
        default=None,
        help="where the initial design comes from: random (default) rows, or llm: a "
        "language model reads example candidates and the results so far and names the "
        "candidates (matched to the table); Bayesian optimisation takes over after it",
    )
    if n_initial:
        group.add_argument(
            "--n-initial",
            type=positive_int,
            default=None,
            help="with --warm-start llm: how many of the first suggestions (measured or "
            "pending) the LLM proposes (default: this call's -n, at least 2)",
        )
    group.add_argument(
        "--llm-backend",
        choices=LLM_BACKENDS,
        default=None,
        help="local (default): a causal LM run here, SmolLM2-135M-Instruct unless "
        "--llm-model says otherwise, its answers ranked among the table's candidates; "
        "openai: any OpenAI-compatible chat server (OpenAI, vLLM, llama.cpp, Ollama)",
    )
    group.add_argument(
        "--llm-model",
        metavar="NAME",
        default=None,
        help="local: smollm2 (default), a model folder or a .gguf file; openai: the model "
        "name the server knows (required)",
    )
    group.add_argument(
        "--llm-base-url",
        metavar="URL",
        default=None,
        help="openai only: the endpoint root, e.g. http://127.0.0.1:8080/v1 "
        "(default https://api.openai.com/v1)",
    )
    group.add_argument(
        "--llm-api-key-env",
        metavar="VAR",
        default=None,
        help="openai only: the environment variable holding the API key (default "
        "OPENAI_API_KEY; 'none' for a server that needs no key); the key itself is never "
        "stored",
    )


def _no_key(name: str) -> bool:
    return name.strip().lower() in ("", "none")


def llm_proposer(args: argparse.Namespace) -> Any:
    """The :class:`~llmbo.proposers.llm.LLMProposer` the ``--llm-*`` options describe, its
    backend built (so a bad URL or an unset key variable fails before a study exists)."""
    from llmbo.proposers.llm import LLMProposer

    backend = args.llm_backend or "local"
    options: dict[str, Any] = {}
    if args.llm_model is not None:
        options["model"] = args.llm_model
    if backend == "openai":
        if not args.llm_model:
            raise InputError(
                "--llm-backend openai needs --llm-model: the name of the model the server "
                "knows (e.g. gpt-4o-mini)."
            )
        if args.llm_base_url is not None:
            options["base_url"] = args.llm_base_url
        key_env = args.llm_api_key_env
        if key_env is not None:
            options["api_key_env"] = None if _no_key(key_env) else key_env
        key_env = options.get("api_key_env", "OPENAI_API_KEY")
        if key_env is not None and not os.environ.get(key_env, "").strip():
            raise InputError(
                f"--llm-api-key-env {key_env}: the environment variable {key_env} is not set "
                f"(or empty). Export the API key in it (export {key_env}=...), name another "
                "variable, or pass --llm-api-key-env none for a server that needs no key."
            )
    else:
        for dest in ("llm_base_url", "llm_api_key_env"):
            if getattr(args, dest, None) is not None:
                raise InputError(f"{_option(dest)} applies to --llm-backend openai only.")
    try:
        proposer = LLMProposer(backend, options)
        proposer.backend  # noqa: B018  (built now: settings that cannot work fail here)
    except InputError as exc:
        raise InputError(f"--warm-start llm with --llm-backend {backend}: {exc}") from exc
    return proposer


def warm_start_proposer(
    args: argparse.Namespace,
    spec: SurrogateConfig,
    acquisition: AcquisitionConfig,
    *,
    n_initial: int,
    progress: bool,
) -> Any:
    """The proposer of a new study with ``--warm-start llm`` (``None`` without it): the LLM
    for the first ``n_initial`` trials, then the model the other options describe."""
    warm = getattr(args, "warm_start", None) == "llm"
    if not warm:
        given = [dest for dest in LLM_OPTIONS if getattr(args, dest, None) is not None]
        if getattr(args, "command", None) == "suggest" and args.n_initial is not None:
            given.append("n_initial")
        if given:
            raise InputError(f"{_option(given[0])} applies with --warm-start llm only.")
        return None
    if n_initial < 1:
        raise InputError(
            "--warm-start llm with --n-initial 0 asks the LLM for nothing; give --n-initial "
            "N >= 1, or leave out --warm-start."
        )
    from llmbo.proposers import BayesianProposer, RandomProposer, WarmStartProposer
    from llmbo.surrogates.factory import uses_encoder

    initial = llm_proposer(args)
    if spec.name.lower() == "random":
        then: Any = RandomProposer()
    else:
        if uses_encoder(spec):
            from llmbo.encoders.transformer import check_model_available

            check_model_available(spec.encoder.model)  # type: ignore[attr-defined]
        then = BayesianProposer(spec, acquisition, progress=progress)
    return WarmStartProposer(initial, then, n_initial=n_initial)


def warm_start_note(info: dict[str, Any]) -> str | None:
    """One line on the LLM's part in a proposal made during a warm start (from the
    proposal's info; ``None`` when the LLM had no part in it)."""
    if info.get("phase") not in ("initial", "both"):
        return None
    llm = info.get("initial", info)
    chosen, fill = len(llm.get("matches", [])), int(llm.get("random_fill", 0))
    rejected = f", {len(llm['rejected'])} reply line(s) rejected" if llm.get("rejected") else ""
    error = f"; error: {short(llm['error'], 160)}" if llm.get("error") else ""
    return (
        f"warm start: {chosen} from the LLM ({llm.get('backend', '?')}){rejected}, {fill} at "
        f"random{error}"
    )


# ------------------------------------------------------------------------------ spaces
@dataclass
class SpaceChoice:
    """A candidate space with where it came from and, when known, its target column."""

    space: CandidateSpace
    target: str | None
    pool: ReactionPool | None
    label: str


def space_given(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "benchmark", None) or getattr(args, "table", None))


def build_space(args: argparse.Namespace, *, need_target: bool) -> SpaceChoice:
    """The space described by ``--benchmark`` or ``--table``/``--template``."""
    from llmbo.space import CandidateSpace

    benchmark, table = args.benchmark, args.table
    target = getattr(args, "target", None)
    if benchmark and table:
        raise InputError("Give either --benchmark or --table, not both.")
    if benchmark:
        from llmbo.datasets import load_pool

        if target is not None:
            raise InputError(
                "--target applies to --table only; a --benchmark's target is its measured value."
            )
        if args.id_column is not None:
            raise InputError(
                "--id-column applies to --table only; benchmark pools carry reaction ids."
            )
        pool = load_pool(benchmark)
        template = args.template or pool.default_template
        space = pool.space(template)
        return SpaceChoice(space, pool.target, pool, f"{pool.name} ({template} template)")
    if not table:
        raise InputError(
            "Say which candidates to use: --benchmark NAME, or --table FILE --template '...'."
        )
    if not args.template:
        raise InputError(
            "--table needs --template, a format string over the table's columns, "
            "e.g. --template '{name} at {temp} C'."
        )
    if need_target and not target:
        raise InputError("--table needs --target COL: the column holding the measured value.")
    space = CandidateSpace.from_file(table, args.template, id_column=args.id_column)
    if target is not None and target not in space.frame.columns:
        raise InputError(
            f"Target column {target!r} is not in {table}; available columns: "
            f"{list(map(str, space.frame.columns))}."
        )
    return SpaceChoice(space, target, None, f"{Path(table).name}")


def minimize_target(args: argparse.Namespace, pool: ReactionPool | None) -> bool:
    """Whether to minimise: ``--minimize`` when given, else the ``--benchmark`` pool's own
    direction (a ``--table`` is maximised)."""
    if getattr(args, "minimize", None):
        return True
    return pool is not None and not pool.maximize


def acquisition_config(
    args: argparse.Namespace, preset: PresetChoice | None = None
) -> AcquisitionConfig:
    """The acquisition settings the model options give over the preset's (e.g. outcome
    power 2), the library's defaults where neither sets one."""
    from llmbo.acquisition import AcquisitionConfig, acquisition_from_settings

    given = {"name": args.acquisition, "outcome_power": getattr(args, "outcome_power", None)}
    base = AcquisitionConfig(**{k: v for k, v in given.items() if v is not None})
    if preset is not None:
        offered = {
            k: v
            for k, v in preset.acquisition.items()
            if not (k == "acquisition.outcome_power" and given["outcome_power"] is not None)
        }
        base = acquisition_from_settings(base, offered)
    return acquisition_from_settings(base, set_settings(args))


#: Model options of ``run`` and ``suggest`` and the surrogate setting each one sets, with
#: how its text becomes the value. The surrogate's config checks the value and whether that
#: surrogate takes the setting (:meth:`~llmbo.surrogates.config.SurrogateConfig.updated`);
#: ``--set KEY=VALUE`` reaches every other setting the same way. One table for creating a
#: study and for checking a reopened one.
OPTION_SETTINGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "steps": ("deep_kernel.steps", int),
    "soft_tokens": ("soft_tokens", int),
    "top_module": ("top_module", lambda v: None if str(v).lower() == "none" else v),
    "noise_prior": ("noise_prior", bool),
    "side_features": ("side_features", str),
    "side_fit": ("deep_kernel.side_fit", str),
}
#: Transformer options: they apply to the surrogates that read the texts with a model and
#: are ignored by the others (``device`` and ``trust_remote_code`` say where and how to run).
ENCODER_OPTION_SETTINGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "model": ("encoder.model", str),
    "pooling": ("encoder.pooling", str),
    "segment_separator": ("encoder.segment_separator", lambda v: decode_separator(v)),
}


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _given_settings(
    args: argparse.Namespace, table: dict[str, tuple[str, Callable[[Any], Any]]]
) -> list[tuple[str, str, Any]]:
    """``(option, setting, value)`` for every option of ``table`` given on the command line
    (a flag counts when on)."""
    out = []
    for dest, (key, convert) in table.items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        out.append((_option(dest), key, convert(value)))
    return out


def set_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--set KEY=VALUE`` settings of a command."""
    from llmbo.surrogates.config import parse_setting

    return dict(parse_setting(item) for item in getattr(args, "settings", None) or [])


def surrogate_choice(
    args: argparse.Namespace,
    pool: ReactionPool | None = None,
    space: CandidateSpace | None = None,
) -> PresetChoice:
    """The preset ``--surrogate`` names, resolved on the candidates (a benchmark pool's
    declared columns, or the columns detected in ``space``), with the model options and
    ``--set`` applied to its surrogate config (they win over the preset's)."""
    from llmbo.presets import DEFAULT_PRESET, TableColumns, resolve_surrogate
    from llmbo.surrogates.factory import uses_encoder

    name = (args.surrogate or DEFAULT_PRESET).lower()
    template = getattr(args, "template", None)
    columns = (
        TableColumns.from_pool(pool, template)
        if pool is not None
        else TableColumns.detect(space)
        if space is not None
        else TableColumns()  # nothing known about the candidates' columns
    )
    chosen = resolve_surrogate(name, columns=columns)
    config = chosen.spec
    if getattr(args, "segment_separator", None) is not None:
        decode_separator(args.segment_separator)  # a bad escape fails for any surrogate
    given = _given_settings(args, OPTION_SETTINGS)
    if uses_encoder(config):
        runtime = [
            ("--device", "encoder.device", getattr(args, "device", None)),
            ("--trust-remote-code", "encoder.trust_remote_code", bool(getattr(args, "trust_remote_code", False))),
        ]  # fmt: skip
        if getattr(args, "pooling", None) == "segments" and args.segment_separator is None:
            # Segments split the text between template fields.
            separator = columns.separator if columns is not None else None
            runtime.append(("--segment-separator", "encoder.segment_separator", separator or "\n"))
        given = _given_settings(args, ENCODER_OPTION_SETTINGS) + runtime + given
    side = getattr(args, "side_features", None)
    if side:
        side_options = _featurizer_options(side, args.fingerprint_columns, pool, "--side-features")
        if side_options is None and columns is not None and side in ("onehot", "components"):
            side_options = {"columns": list(columns.categorical)} if columns.categorical else None
        given.append(("--side-features", "side_featurizer", side_options or {}))
    elif args.fingerprint_columns:
        featurizer = _featurizer_options(config.name, args.fingerprint_columns, pool)
        if featurizer:
            given.append(("--fingerprint-columns", "featurizer", featurizer))
    try:
        config = config.updated({key: value for _, key, value in given})
    except InputError as exc:
        for option, key, value in given:  # name the option that the config refused
            try:
                config.updated({key: value})
            except InputError as one:
                raise InputError(f"{option}: {one}") from exc
        raise
    from llmbo.acquisition import is_acquisition_setting

    settings = {k: v for k, v in set_settings(args).items() if not is_acquisition_setting(k)}
    return replace(chosen, spec=config.updated(settings))


def acquisition_label(opt: Optimizer) -> str:
    """``logei`` or ``logei (outcome power 2)``: the acquisition as a summary names it."""
    power = getattr(opt.acquisition, "outcome_power", 1.0)
    return opt.acquisition.name + ("" if power == 1 else f" (outcome power {power:g})")


def note_preset(preset: PresetChoice) -> None:
    """Say on stderr what a preset that adapts to the table chose, and why."""
    import sys

    if preset.reason:
        print(f"llmbo: --surrogate {preset.preset}: {preset.reason}.", file=sys.stderr)


def surrogate_spec(
    args: argparse.Namespace,
    pool: ReactionPool | None = None,
    space: CandidateSpace | None = None,
) -> SurrogateConfig:
    """The surrogate config of :func:`surrogate_choice`."""
    return surrogate_choice(args, pool, space).spec


def _featurizer_options(
    name: str, columns: str | None, pool: ReactionPool | None, option: str = "--surrogate"
) -> dict[str, Any] | None:
    if name not in FIXED_FEATURIZERS:
        if columns:
            raise InputError(
                "--fingerprint-columns applies to the drfp, morgan, onehot and components "
                f"surrogates, not {name!r}."
            )
        return None
    if columns:
        cols = [c.strip() for c in columns.split(",") if c.strip()]
    elif pool is not None:
        from llmbo.datasets import pool_featurizer_options

        return pool_featurizer_options(pool, name)
    elif name in ("onehot", "components"):
        return None  # every text-like column of the table
    else:
        what = "the reaction-SMILES column" if name == "drfp" else "the SMILES columns"
        raise InputError(f"{option} {name} on a table needs --fingerprint-columns: {what}.")
    if name == "drfp":
        if len(cols) != 1:
            raise InputError(
                f"{option} drfp reads one reaction-SMILES column; got --fingerprint-columns "
                f"{columns!r}."
            )
        return {"column": cols[0]}
    return {"columns": cols}


# ------------------------------------------------------------------------------ studies
def sqlite_file(location: str) -> str | None:
    """The file behind ``--study``: the path itself, or the file of a ``sqlite:///`` URL;
    ``None`` for other databases (and in-memory ones)."""
    if not is_url(location):
        return location
    from sqlalchemy.engine import make_url

    try:
        url = make_url(location)
    except Exception:
        return None
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    database = url.database
    if database.startswith("file:"):  # a SQLite URI filename
        database = database[len("file:") :].split("?", 1)[0]
    return database


def is_new_file(location: str) -> bool:
    """Whether ``--study`` names a SQLite file that does not exist yet (or is empty)."""
    path = sqlite_file(location)
    if path is None:
        return False
    kind = path_kind(path, "--study")
    return kind == "missing" or (kind == "file" and Path(path).stat().st_size == 0)


def open_storage(location: str, *, must_exist: bool, readonly: bool = False) -> BaseStorage:
    """Open ``--study`` (a SQLite file or a database URL).

    With ``must_exist`` the location must already hold llmbo's tables: it is looked at
    read-only first, so a file that is not a study is never written to.
    """
    from llmbo.storage import get_storage

    check_study_location(location)
    path = sqlite_file(location)
    if must_exist and path is not None and path_kind(path, "--study") == "missing":
        raise InputError(
            f"Study file {display_location(location)!r} does not exist. Start the campaign "
            f"with `llmbo suggest --study {display_location(location)} --table FILE "
            "--template '...'` (or --benchmark NAME) first."
        )
    if path is not None and path_kind(path, "--study") == "missing":
        check_output_path(path, "--study")
    if must_exist and not readonly:
        get_storage(location, readonly=True)  # not an llmbo study -> StudyFileError, unchanged
    return get_storage(location, readonly=readonly)


def load_study(
    store: BaseStorage,
    args: argparse.Namespace,
    *,
    progress: bool,
    trust_remote_code: bool | None = None,
    check_model: bool = True,
) -> Optimizer:
    """Reopen the study ``args`` names; ``trust_remote_code`` defaults to the option.
    Commands that never fit (``observe``, ``status``) pass ``check_model=False``, so they
    work where the study's model is not installed."""
    from llmbo.optimizer import Optimizer

    names = store.study_names()
    if args.study_name not in names:
        listed = ", ".join(repr(n) for n in names) if names else "none"
        raise InputError(
            f"No study named {args.study_name!r} in {display_location(args.study)} (studies "
            f"there: {listed}). Pick one with --study-name, or create it with `llmbo suggest`."
        )
    opt = Optimizer.load(
        store,
        args.study_name,
        progress=progress,
        device=getattr(args, "device", None),
        lease_seconds=getattr(args, "lease_seconds", 60.0),
        check_model=check_model,
        trust_remote_code=(
            bool(getattr(args, "trust_remote_code", False))
            if trust_remote_code is None
            else trust_remote_code
        ),
    )
    _adopt_warm_start(opt, device=getattr(args, "device", None), progress=progress)
    return opt


def _adopt_warm_start(opt: Optimizer, *, device: str | None, progress: bool) -> None:
    """For a study with a warm start, what :meth:`Optimizer.load` does for a Bayesian
    proposer, done on the one after the warm start: its acquisition shown as the study's,
    its progress bars and this call's ``--device``."""
    from dataclasses import replace

    from llmbo.proposers import BayesianProposer, WarmStartProposer
    from llmbo.surrogates.factory import uses_encoder

    if not isinstance(opt.proposer, WarmStartProposer):
        return
    then = opt.proposer.then
    if not isinstance(then, BayesianProposer):
        return
    opt.acquisition = then.acquisition
    opt.min_observations = then.min_observations
    then.progress = progress
    spec = then.spec
    if device is not None and spec is not None and uses_encoder(spec):
        encoder = replace(spec.encoder, device=device)  # type: ignore[attr-defined]
        then.spec = replace(spec, encoder=encoder)  # type: ignore[call-arg]


def open_or_create(
    args: argparse.Namespace,
    store: BaseStorage | None,
    choice: SpaceChoice | None,
    *,
    progress: bool,
    n: int,
) -> Optimizer:
    """The study ``args`` name: reopened with its stored settings (options that contradict
    them are refused), or created from the candidate and model options.

    ``store`` is ``None`` for a SQLite file that does not exist yet: it is created only after
    every option, the table, the model and ``n`` were checked, so a call that fails on bad
    input leaves no file behind. Creation is atomic in the database; when another process
    creates the same study first, it is opened (and must have the same settings).
    """
    from llmbo.optimizer import Optimizer

    if store is not None and args.study_name in store.study_names():
        study = store.load_study(args.study_name)
        check_reopen_options(args, study)
        opt = load_study(store, args, progress=progress)
        if choice is not None and choice.space.content_hash() != opt.space.content_hash():
            raise InputError(
                f"Study {args.study_name!r} in {display_location(args.study)} was created for "
                "other candidates than the given --table/--template (or --benchmark); leave "
                "them out to continue it, or use another --study-name."
            )
        return opt
    if choice is None:
        raise InputError(
            f"Study {args.study_name!r} does not exist in {display_location(args.study)} yet; "
            "the first call needs the candidates: --table FILE --template '...' (or "
            "--benchmark NAME), and optionally the model options."
        )
    preset = surrogate_choice(args, choice.pool, choice.space)
    note_preset(preset)
    spec = preset.spec
    acquisition = acquisition_config(args, preset)
    if n > len(choice.space):
        raise InputError(
            f"Asked for {n} suggestion(s) but the table has only {len(choice.space)} "
            "candidates; ask for fewer."
        )
    settings: dict[str, Any] = {
        "acquisition": acquisition,
        "maximize": not minimize_target(args, choice.pool),
        "seed": args.seed if args.seed is not None else 0,
        "study_name": args.study_name,
        "progress": progress,
        "lease_seconds": getattr(args, "lease_seconds", 60.0),
    }
    n_initial = getattr(args, "n_initial", None)
    proposer = warm_start_proposer(
        args,
        spec,
        acquisition,
        n_initial=n_initial if n_initial is not None else max(n, 2),
        progress=progress,
    )
    if store is None:
        # The file is created only once the table survives storage and the model exists.
        from llmbo.encoders.transformer import check_model_available
        from llmbo.study.settings import space_payload
        from llmbo.surrogates.factory import uses_encoder

        space_payload(choice.space, shared=True)
        if uses_encoder(spec):
            check_model_available(spec.encoder.model)
        store = open_storage(args.study, must_exist=False)
    opt = Optimizer(choice.space, spec, storage=store, proposer=proposer, **settings)
    if opt.created_study and getattr(args, "table", None):
        # Remembered only to protect it: a later --out must not replace the table.
        opt.storage.set_attr(opt.study.study_id, TABLE_ATTR, str(Path(args.table).resolve()))
    return opt


#: Study attribute holding the path of the table a CLI call created the study from.
TABLE_ATTR = "cli.table_path"


def stored_table(opt: Optimizer) -> str:
    """The table path :func:`open_or_create` remembered (``""`` if none)."""
    value = opt.storage.get_attrs(opt.study.study_id).get(TABLE_ATTR)
    return value if isinstance(value, str) else ""


def discard_if_unused(opt: Optimizer | None) -> None:
    """Remove a study this call created, if nobody has used it (no trial at all)."""
    if opt is None or not opt.created_study:
        return
    try:
        opt.storage.discard_study(opt.study.study_id)
    except Exception as exc:  # keep the original error the one the user sees
        logger.warning("Could not remove the new study %r again: %r", opt.study.name, exc)


# ----------------------------------------------------------------------------- output
def is_url(text: str) -> bool:
    return "://" in text


def display_location(location: str) -> str:
    """``--study`` as it may be shown: escapes visible, a URL's password hidden."""
    return safe_text(location)


def path_kind(path: str | Path, option: str) -> str:
    """What ``path`` is: ``"missing"``, ``"file"``, ``"dir"`` or ``"other"`` (a device,
    FIFO or socket), without opening it; :class:`InputError` when it cannot be looked at
    (a name too long, a folder that cannot be read)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    except OSError as exc:
        raise InputError(
            f"{option} {safe_text(str(path)[:80])!r}: {exc.strerror or exc}; give another "
            "file name."
        ) from None
    if stat.S_ISREG(mode):
        return "file"
    return "dir" if stat.S_ISDIR(mode) else "other"


def check_study_location(location: str) -> None:
    """Refuse ``--study`` values that cannot hold a durable study, before anything runs."""
    if is_url(location):
        from sqlalchemy.engine import make_url

        try:
            url = make_url(location)
        except Exception as exc:
            from llmbo.errors import StudyFileError

            raise StudyFileError(
                f"--study {display_location(location)!r} is not a valid database URL ({exc}); "
                "use a file name such as campaign.db, or a URL such as "
                "'postgresql+psycopg://user@host/db'."
            ) from None
        if url.get_backend_name() != "sqlite":
            return
        if url.database in (None, "", ":memory:") or url.query.get("mode") == "memory":
            raise InputError(
                f"--study {location!r} is an in-memory database, which is gone when the "
                "command ends; give a file name such as campaign.db."
            )
        location = sqlite_file(location) or location
    kind = path_kind(location, "--study")
    if kind == "dir":
        raise InputError(
            f"--study {safe_text(location)!r} is a directory; give a file name such as campaign.db."
        )
    if kind == "other":
        raise InputError(
            f"--study {safe_text(location)!r} is not a regular file (a device, pipe or "
            "socket); give a file name such as campaign.db."
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.expanduser().resolve() == b.expanduser().resolve()


def check_output_path(path: str, option: str, *, protected: Sequence[tuple[str, str]] = ()) -> Path:
    """Fail early (before anything is written) if ``path`` cannot or must not be written.

    ``protected`` lists ``(option, path)`` pairs that the output must not replace (the
    study file with SQLite's side files, the input table): writing there would destroy
    measurements or input. An existing output must be a regular file, since a device node,
    pipe or socket would be replaced by the output.
    """
    p = Path(path)
    kind = path_kind(p, option)
    if kind == "dir":
        raise InputError(f"{option} {path!r} is a directory; give a file name such as results.csv.")
    if kind == "other":
        raise InputError(
            f"{option} {path!r} is not a regular file (a device, pipe or socket) and would be "
            "replaced by the output; give a file name such as results.csv."
        )
    for other_option, given in protected:
        other = (sqlite_file(given) if other_option == "--study" else given) if given else None
        if not other:
            continue
        sides = [other] + (
            [other + s for s in ("-wal", "-shm", "-journal")] if other_option == "--study" else []
        )
        if any(_same_file(p, Path(side)) for side in sides):
            raise InputError(
                f"{option} {path!r} is the {other_option} file; writing there would replace "
                f"it. Give another file name for {option}."
            )
    from llmbo.storage import is_sqlite_file

    if kind == "file" and option != "--study" and is_sqlite_file(p):
        raise InputError(
            f"{option} {path!r} is a SQLite database or one of its side files (perhaps a "
            "study's), and the output would replace it; give another file name."
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(
            f"{option} {path!r}: folder {str(parent)!r} does not exist; create it first."
        )
    if not os.access(parent, os.W_OK):
        raise InputError(f"{option} {path!r}: folder {str(parent)!r} is not writable.")
    return p


#: Characters never sent to the terminal as they are: control characters (ANSI escape
#: sequences start with ESC) and the bidirectional overrides that reorder what is shown.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def safe_text(text: Any, keep: str = "") -> str:
    """``text`` safe to print: control characters (but those in ``keep``) and
    bidirectional overrides shown as escapes (``\\x1b``), URL passwords as ``***``."""
    text = redact_passwords(str(text))
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if (unicodedata.category(ch) == "Cc" and ch not in keep) or ch in _BIDI_CONTROLS
        else ch
        for ch in text
    )


class SafeFormatter(logging.Formatter):
    """Log records made safe to print, as :func:`safe_text` does for output."""

    def format(self, record: logging.LogRecord) -> str:
        return safe_text(super().format(record), keep="\n\t")


class SafeWriter:
    """A text stream that passes everything through :func:`safe_text` (newlines and tabs
    kept): no table value, file name or option can send terminal escapes, or a password,
    to the terminal."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(safe_text(text, keep="\n\t"))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def short(text: str, width: int = 100) -> str:
    """One line of at most ``width`` characters (newlines shown as ' | ')."""
    line = " | ".join(part.strip() for part in str(text).splitlines() if part.strip())
    line = safe_text(line)
    return line if len(line) <= width else line[: width - 3] + "..."


def format_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print a small left-aligned table."""
    cells = [{c: safe_text(r.get(c, "")) for c in columns} for r in rows]
    widths = {c: max([len(c), *(len(r[c]) for r in cells)]) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in cells:
        print("  ".join(r[c].ljust(widths[c]) for c in columns).rstrip())


# ----------------------------------------------------------------------------- reopening
def _stored_proposer(study: StudyRecord) -> dict[str, Any]:
    """The stored settings of the proposer that models (the one after a warm start), with
    every default filled in."""
    warm = _warm_start_config(study)
    if warm is not None:
        return dict(warm["then"])
    from llmbo.study.settings import normalised_proposer_config, stored_proposer_config

    return normalised_proposer_config(stored_proposer_config(study.config))


def _warm_start_config(study: StudyRecord) -> dict[str, Any] | None:
    """The stored warm-start proposer settings, defaults filled in (``None``: no warm start)."""
    from llmbo.study.settings import normalised_proposer_config, stored_proposer_config

    config = stored_proposer_config(study.config)
    if config.get("name") != "warm_start":
        return None
    return normalised_proposer_config(config)


def _llm_setting(study: StudyRecord, key: str) -> Any:
    """A setting of a warm start's LLM proposer (``NOT_A_SETTING`` without one)."""
    from llmbo.study.settings import flatten_settings

    warm = _warm_start_config(study)
    if warm is None:
        return NOT_A_SETTING
    return flatten_settings(warm["initial"]).get(key, NOT_A_SETTING)


#: A setting the study's proposer does not have (e.g. ``top_module`` of a ``projection``
#: study, or the acquisition of random search).
NOT_A_SETTING = object()


def _stored_setting(study: StudyRecord, key: str) -> Any:
    from llmbo.study.settings import flatten_settings

    return flatten_settings(_stored_proposer(study)).get(key, NOT_A_SETTING)


def _reopen_setting(key: str, convert: Callable[[Any], Any]) -> tuple[Callable, Callable]:
    return (lambda st: _stored_setting(st, f"surrogate.{key}"), convert)


#: Options that set what a study computes. They are fixed when the study is created: on
#: reopening, a given option must equal the stored setting (read here in the option's own
#: terms) or the call is refused. One rule for ``suggest`` and ``run``; the surrogate
#: options come from :data:`OPTION_SETTINGS`.
REOPEN_SETTINGS: dict[str, tuple[Callable[[StudyRecord], Any], Callable[[Any], Any]]] = {
    "seed": (lambda st: st.seed, int),
    "minimize": (lambda st: st.direction == "minimize", bool),
    "acquisition": (lambda st: _stored_setting(st, "acquisition.name"), str),
    "outcome_power": (lambda st: _stored_setting(st, "acquisition.outcome_power"), float),
    "surrogate": (lambda st: _stored_setting(st, "surrogate.name"), str),
    **{
        dest: _reopen_setting(key, convert)
        for dest, (key, convert) in {**ENCODER_OPTION_SETTINGS, **OPTION_SETTINGS}.items()
    },
    "id_column": (lambda st: st.space.get("id_column"), str),
    "warm_start": (lambda st: "random" if _warm_start_config(st) is None else "llm", str),
    "llm_backend": (lambda st: _llm_setting(st, "backend"), str),
    "llm_model": (lambda st: _llm_setting(st, "backend_options.model"), str),
    "llm_base_url": (lambda st: _llm_setting(st, "backend_options.base_url"), str),
    "llm_api_key_env": (
        lambda st: _llm_setting(st, "backend_options.api_key_env"),
        lambda v: None if _no_key(v) else v,
    ),
}
#: What an option means when left at its default, for studies that lack its setting
#: (``run`` passes these defaults whether or not they were typed).
_OPTION_DEFAULTS: dict[str, Any] = {
    "acquisition": "logei",
    "outcome_power": 1.0,
    "model": "minilm",
    "pooling": "mean",
    "segment_separator": "\n",
    "noise_prior": False,
}
#: Options that describe the candidates: on reopening, the space they give is compared with
#: the stored one by content.
SPACE_OPTIONS = frozenset({"benchmark", "table", "template"})
#: Options that only apply when a study is created and are refused on reopening.
CREATION_ONLY_OPTIONS = frozenset({"fingerprint_columns", "settings"})
#: Options about this call (where to run, what to write, how long), not about the study.
RUNTIME_OPTIONS = frozenset(
    {
        "command",
        "func",
        "verbose",
        "study",
        "study_name",
        "device",
        "trust_remote_code",
        "no_progress",
        "n",
        "out",
        "release_pending",
        "iterations",
        "batch_size",
        "n_initial",
        "lease_seconds",
        "output",
        "target",
        "results",
        "id_col",
        "value_col",
        "top",
    }
)


def _stored_preset_surrogate(given: str, study: StudyRecord, had: Any) -> str:
    """The surrogate preset ``given`` resolves to on the study's stored candidates (so
    ``--surrogate components-or-lora`` continues the components study it created), or
    ``given`` when it is no preset or cannot resolve there."""
    from llmbo.presets import PRESETS, TableColumns
    from llmbo.space import CandidateSpace

    if given.lower() not in PRESETS or "records" not in study.space:
        return given
    try:
        columns = TableColumns.detect(CandidateSpace.from_dict(study.space))
        name = PRESETS.get(given.lower()).resolve(columns).spec.name
    except LlmboError:
        return given
    return name if name == had else given


def check_reopen_options(args: argparse.Namespace, study: StudyRecord) -> None:
    """Refuse options that contradict the settings ``study`` was created with."""
    where = f"Study {study.name!r} in {display_location(args.study)}"
    for dest in sorted(CREATION_ONLY_OPTIONS):
        if getattr(args, dest, None) is not None:
            option = "--set" if dest == "settings" else _option(dest)
            raise InputError(
                f"{option} only applies when a study is created; drop it to continue "
                f"{study.name!r}."
            )
    for dest, (stored_of, as_given) in REOPEN_SETTINGS.items():
        given = getattr(args, dest, None)
        if given is None:
            continue
        option = "--" + dest.replace("_", "-")
        had = stored_of(study)
        if had is NOT_A_SETTING and dest in LLM_OPTIONS:
            warm = _warm_start_config(study)
            what = (
                "without --warm-start llm"
                if warm is None
                else f"with --llm-backend {warm['initial']['backend']}, which has no setting "
                f"{option} could set"
            )
            raise InputError(f"{where} was created {what}; drop {option} to continue it.")
        if had is NOT_A_SETTING:
            if dest == "surrogate":
                had = _stored_proposer(study)["name"]  # random search
            elif as_given(given) == _OPTION_DEFAULTS.get(dest, NOT_A_SETTING):
                continue  # the default of a setting the study does not have
            else:
                what = _stored_setting(study, "surrogate.name")
                what = "random search" if what is NOT_A_SETTING else f"the {what} surrogate"
                raise InputError(
                    f"{where} was created with {what}, which has no setting {option} could "
                    "set; drop the option to continue it."
                )
        if dest == "surrogate" and as_given(given) != had:
            given = _stored_preset_surrogate(str(given), study, had)
        if as_given(given) != had:
            plain = isinstance(had, str) and had.isprintable() and had == had.strip() and had
            shown = "on" if had is True else "off" if had is False else had if plain else repr(had)
            raise InputError(
                f"{where} was created with {option} {shown}; got {option} {given!r}. A study "
                "keeps the settings it was created with: drop the option, or start a new study "
                "with another --study-name or file."
            )
    _check_reopen_n_initial(args, study, where)


def _check_reopen_n_initial(args: argparse.Namespace, study: StudyRecord, where: str) -> None:
    """A warm start's length is a study setting: ``--n-initial`` must repeat it (``run``
    always passes one; ``suggest`` only with a warm start)."""
    given = getattr(args, "n_initial", None)
    if given is None:
        return
    warm = _warm_start_config(study)
    if warm is None:
        if getattr(args, "command", None) == "suggest":
            raise InputError(
                f"{where} was created without --warm-start llm; --n-initial applies to a "
                "warm start only: drop it to continue the study."
            )
        return
    if int(given) != int(warm["n_initial"]):
        raise InputError(
            f"{where} was created with --warm-start llm --n-initial {warm['n_initial']}; got "
            f"--n-initial {given}. A study keeps the settings it was created with: pass "
            f"--n-initial {warm['n_initial']}, or start a new study."
        )
