"""Option groups and helpers shared by ``llmbo run``, ``suggest``, ``observe`` and ``status``.

Heavy modules (torch, transformers, the optimizer) are imported inside functions so that
``llmbo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmbo.errors import InputError

if TYPE_CHECKING:
    from llmbo.acquisition import AcquisitionConfig
    from llmbo.benchmarks.datasets import ReactionPool
    from llmbo.space import CandidateSpace
    from llmbo.surrogates.factory import SurrogateSpec

ACQUISITIONS = ("logei", "ucb", "ts")


#: Template used with ``--benchmark`` when none is given (shorter and, with segment pooling,
#: the best-scoring template for the packaged MiniLM; see benchmarks/README.md).
DEFAULT_BENCHMARK_TEMPLATE = "names"


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
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


# ------------------------------------------------------------------------ option groups
def add_space_options(parser: argparse.ArgumentParser, *, target: bool) -> None:
    """``--benchmark NAME`` or ``--table FILE --template T [--id-column C]`` (+ ``--target``)."""
    group = parser.add_argument_group("candidates")
    group.add_argument(
        "--benchmark",
        metavar="NAME",
        help="a packaged reaction pool: bh1..bh5 or suzuki (target: yield)",
    )
    group.add_argument(
        "--table", metavar="FILE", help="CSV, TSV or Parquet file, one row per candidate"
    )
    group.add_argument(
        "--template",
        help="text of each candidate: a format string over the table's columns, e.g. "
        "'{ligand} with {base} at {temp:.0f} C'; with --benchmark: names (default) or procedure",
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
    group.add_argument(
        "--surrogate",
        default=d("lora"),
        help="lora (default), projection, static, drfp, morgan, onehot, components or random",
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
        default=d(1.0),
        metavar="P",
        help="fit the model to, and measure improvement on, the observed values scaled to "
        "[0, 1] (worst to best) and raised to P; 2 spreads out the best values (default 1: "
        "the values as they are); see benchmarks/README.md, twelfth round",
    )
    group.add_argument(
        "--seed", type=int, default=d(0), help="seed of every random choice (default 0)"
    )
    group.add_argument(
        "--minimize",
        action="store_true",
        default=d(False),
        help="minimise the target (default: maximise)",
    )
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
        "on a CPU); 'auto' picks 'output' for BERT-family models; default: LoRA on whole "
        "top layers",
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
        "one categorical kernel per component to that (benchmarks/README.md)",
    )
    group.add_argument(
        "--side-fit",
        choices=("joint", "staged", "fixed", "residual"),
        default=None,
        help="with --side-features: joint (default) trains the side kernel with the network; "
        "staged first fits a GP on the side features alone and starts from it; fixed also "
        "keeps that GP's kernel as fitted, so the LLM kernel learns what it leaves "
        "unexplained; residual also keeps that GP's mean and noise",
    )
    group.add_argument(
        "--noise-prior",
        action="store_true",
        default=d(False),
        help="put BoTorch's default LogNormal(-4, 1) prior on the GP's noise variance and "
        "start the noise at its mode, 0.0067 (default: no prior, only a floor of 1e-4); see "
        "benchmarks/README.md, eleventh round",
    )
    group.add_argument(
        "--pooling",
        choices=("mean", "cls", "last", "segments"),
        default=None,
        help="how token states become one vector: mean, cls, last, or segments (one mean per "
        "part of the text between --segment-separator, concatenated); default: segments for "
        "--benchmark pools, mean otherwise",
    )
    group.add_argument(
        "--segment-separator",
        default=None,
        help="separator of the text's parts for --pooling segments (default: newline; the "
        "benchmark templates know their own)",
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
        "--study-name", default="default", help="name of the study in that file (default: default)"
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
        from llmbo.benchmarks.datasets import load_pool

        if target is not None:
            raise InputError(
                "--target applies to --table only; a --benchmark's target is its yield."
            )
        if args.id_column is not None:
            raise InputError(
                "--id-column applies to --table only; benchmark pools carry reaction ids."
            )
        pool = load_pool(benchmark)
        template = args.template or DEFAULT_BENCHMARK_TEMPLATE
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


def acquisition_config(args: argparse.Namespace) -> AcquisitionConfig:
    """The acquisition settings the model options give (the library's defaults where not
    given)."""
    from llmbo.acquisition import AcquisitionConfig

    given = {"name": args.acquisition, "outcome_power": getattr(args, "outcome_power", None)}
    return AcquisitionConfig(**{k: v for k, v in given.items() if v is not None})


def surrogate_spec(args: argparse.Namespace, pool: ReactionPool | None = None) -> SurrogateSpec:
    """A :class:`SurrogateSpec` from the model options (library defaults where not given)."""
    from llmbo.encoders.transformer import EncoderConfig
    from llmbo.surrogates.base import SURROGATES
    from llmbo.surrogates.factory import SurrogateSpec

    name = args.surrogate or "lora"
    SURROGATES.get(name)  # unknown name -> InputError listing the choices
    spec = SurrogateSpec(name=name)
    pooling = getattr(args, "pooling", None) or ("segments" if pool is not None else "mean")
    separator = getattr(args, "segment_separator", None)
    if separator is None:
        from llmbo.benchmarks.methods import TEMPLATE_SEPARATORS

        template = getattr(args, "template", None) or DEFAULT_BENCHMARK_TEMPLATE
        separator = TEMPLATE_SEPARATORS.get(template, "\n") if pool is not None else "\n"
    spec = replace(
        spec,
        encoder=EncoderConfig(
            model=args.model or "minilm",
            device=args.device,
            pooling=pooling,  # type: ignore[arg-type]
            segment_separator=separator.encode().decode("unicode_escape"),
        ),
    )
    if args.steps is not None:
        spec = replace(spec, deep_kernel=replace(spec.deep_kernel, steps=int(args.steps)))
    if args.soft_tokens is not None:
        spec = replace(spec, soft_tokens=int(args.soft_tokens))
    if getattr(args, "top_module", None):
        if name.lower() != "lora":
            raise InputError("--top-module applies to the lora surrogate only.")
        value = None if args.top_module.lower() == "none" else args.top_module
        spec = replace(spec, top_module=value)
    if getattr(args, "noise_prior", False):
        if name.lower() == "random":
            raise InputError("--noise-prior applies to GP surrogates, not to random search.")
        spec = replace(spec, noise_prior=True)
    side = getattr(args, "side_features", None)
    side_fit = getattr(args, "side_fit", None)
    if side_fit and not side:
        raise InputError("--side-fit needs --side-features (the kernel it fits first).")
    if side_fit:
        spec = replace(spec, deep_kernel=replace(spec.deep_kernel, side_fit=side_fit))
    if side:
        if name.lower() not in ("projection", "lora"):
            raise InputError(
                f"--side-features adds a kernel to a deep kernel: it applies to the projection "
                f"and lora surrogates, not {name!r}."
            )
        options = (
            _featurizer_options(side, args.fingerprint_columns, pool, option="--side-features")
            or {}
        )
        return replace(spec, side_features=side, side_featurizer=options)
    featurizer = _featurizer_options(name.lower(), args.fingerprint_columns, pool)
    if featurizer:
        spec = replace(spec, featurizer=featurizer)
    return spec


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
        from llmbo.benchmarks.methods import pool_featurizer_options

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


# ----------------------------------------------------------------------------- output
def is_url(text: str) -> bool:
    return "://" in text


def check_output_path(path: str, option: str) -> Path:
    """Fail early (before anything is written) if ``path`` cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{option} {path!r} is a directory; give a file name such as results.csv.")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(
            f"{option} {path!r}: folder {str(parent)!r} does not exist; create it first."
        )
    if not os.access(parent, os.W_OK):
        raise InputError(f"{option} {path!r}: folder {str(parent)!r} is not writable.")
    return p


def short(text: str, width: int = 100) -> str:
    """One line of at most ``width`` characters (newlines shown as ' | ')."""
    line = " | ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return line if len(line) <= width else line[: width - 3] + "..."


def format_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print a small left-aligned table."""
    widths = {
        c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns
    }
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())
