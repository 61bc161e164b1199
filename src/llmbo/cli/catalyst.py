"""``llmbo catalyst``: soft-prompt tuning with an LLM mentor's restarts, resumable.

Every epoch end, mentor request and reply and restart is stored in the study file; run
the same command again to resume after the last finished epoch.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llmbo.cli import common
from llmbo.cli.hpo import task_from_args, task_options
from llmbo.errors import InputError

_DESCRIPTION = (
    "Tune a soft prompt (PEFT prompt tuning) and a task head on a text task by gradient "
    "descent, and after the first --rounds epochs let an LLM mentor read the prompts the "
    "epoch went through (projected to vocabulary tokens, scored on validation) and propose "
    "better ones to restart from (LLM-catalyst, arXiv 2405.19732). --llm-backend none trains "
    "on gradients alone (the baseline)."
)
_EXAMPLES = (
    "examples:\n"
    "  llmbo catalyst --task sentiment-lexicon --epochs 10 --study cat.db\n"
    "  llmbo catalyst --data words.csv --text-column word --label-column rating "
    "--llm-backend openai --llm-model gpt-4o-mini --study cat.db\n"
    "  llmbo catalyst --task sentiment-lexicon --llm-backend openai --llm-model qwen2.5 "
    "--llm-base-url http://127.0.0.1:8080/v1 --llm-api-key-env none --study cat.db\n"
    "  llmbo catalyst --task sentiment-lexicon --llm-backend none --study grad.db"
)
BACKEND_CHOICES = ("local", "openai", "none")


def _options() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    return {
        "task": task_options(),
        "mentor": [
            (
                "--llm-backend",
                {
                    "choices": BACKEND_CHOICES,
                    "default": "local",
                    "help": "local (default): a causal LM run here (SmolLM2-135M-Instruct "
                    "unless --llm-model); openai: an OpenAI-compatible server; none: no "
                    "mentor",
                },
            ),
            ("--llm-model", {"default": None, "help": "the mentor model (openai: required)"}),
            (
                "--llm-base-url",
                {"default": None, "help": "openai: endpoint root, e.g. http://127.0.0.1:8080/v1"},
            ),
            (
                "--llm-api-key-env",
                {
                    "default": None,
                    "help": "openai: variable holding the API key (default OPENAI_API_KEY; "
                    "'none' for servers without keys); the key is never stored",
                },
            ),
            (
                "--rounds",
                {
                    "type": int,
                    "default": 3,
                    "help": "mentor rounds: after epochs 0..rounds-1 (default 3)",
                },
            ),
            ("--proposals", {"type": common.positive_int, "default": 3}),
            ("--max-shown", {"type": common.positive_int, "default": 5}),
            ("--restart-from", {"choices": ["first", "best"], "default": "first"}),
            (
                "--restart-when",
                {
                    "choices": ["always", "improves"],
                    "default": "always",
                    "help": "always restart from the proposal (default, as the paper), or "
                    "only when it beats the current prompt on validation",
                },
            ),
        ],
        "training": [
            ("--epochs", {"type": common.positive_int, "default": 10}),
            ("--prompt-tokens", {"type": common.positive_int, "default": 8}),
            ("--learning-rate", {"type": common.positive_float, "default": 3e-3}),
            ("--batch-size", {"type": common.positive_int, "default": 32}),
            ("--init-text", {"default": None, "help": "text the soft prompt starts from"}),
            ("--device", {"default": None, "help": "cpu, cuda, ... (default: CUDA if any)"}),
            ("--seed", {"type": common.seed_int, "default": 0}),
        ],
        "study": [
            ("--study", {"required": True, "help": "study file (SQLite) or database URL"}),
            ("--study-name", {"type": common.study_name_arg, "default": None}),
            ("--no-progress", {"action": "store_true", "help": "no progress bar"}),
        ],
    }


def register(subparsers: Any) -> None:
    """Add ``llmbo catalyst`` to the ``llmbo`` parser."""
    p = common.add_command(
        subparsers, "catalyst", "prompt tuning with an LLM mentor", _DESCRIPTION, _EXAMPLES
    )
    common.add_option_groups(p, _options())
    p.set_defaults(
        func=catalyst_command, interrupted="every finished epoch is saved; run again to resume."
    )


def backend_from_args(args: argparse.Namespace) -> Any:
    """The mentor backend the options name (``None`` for ``--llm-backend none``)."""
    from llmbo.llm import make_backend

    if args.llm_backend == "none":
        return None
    options: dict[str, Any] = {}
    if args.llm_model is not None:
        options["model"] = args.llm_model
    if args.llm_backend == "openai":
        if not args.llm_model:
            raise InputError(
                "--llm-backend openai needs --llm-model: the model name the server knows."
            )
        if args.llm_base_url is not None:
            options["base_url"] = args.llm_base_url
        if args.llm_api_key_env is not None:
            options["api_key_env"] = args.llm_api_key_env
    elif args.llm_base_url is not None or args.llm_api_key_env is not None:
        raise InputError("--llm-base-url and --llm-api-key-env apply to --llm-backend openai only.")
    return make_backend(args.llm_backend, **options)


def catalyst_command(args: argparse.Namespace) -> int:
    from llmbo.catalyst import Catalyst, CatalystConfig
    from llmbo.encoders.transformer import check_model_available

    if args.rounds < 0 or (args.rounds == 0 and args.llm_backend != "none"):
        raise InputError(
            f"--rounds {args.rounds}: the mentor needs at least one round (1 to --epochs); "
            "for gradient descent alone use --llm-backend none."
        )
    common.check_study_location(args.study)
    task = task_from_args(args)
    check_model_available(args.model)
    backend = backend_from_args(args)
    rounds = args.rounds if backend is not None else 0
    config = CatalystConfig(
        epochs=args.epochs,
        mentor_epochs=tuple(range(rounds)),
        num_virtual_tokens=args.prompt_tokens,
        proposals=args.proposals,
        max_shown=args.max_shown,
        restart_from=args.restart_from,
        restart_when=args.restart_when,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        init_text=args.init_text,
        device=args.device,
        seed=args.seed,
    )
    progress = not args.no_progress and sys.stderr.isatty()
    run = Catalyst(task, backend, config, storage=args.study, study_name=args.study_name,
                   progress=progress)  # fmt: skip
    result = run.run()
    llm = backend.label if backend is not None else "none (gradients only)"
    print(f"mentor: {llm}; restarts: {result.restarts}")
    print(
        f"best validation {task.metric_name}: {result.best_validation:.6g} "
        f"(epoch {result.best_epoch}); test {task.metric_name}: {result.test_metric:.6g}"
    )
    print(f"best prompt (nearest tokens): {result.best_prompt!r}")
    print(f"history in study {common.display_location(args.study)!r}")
    return 0
