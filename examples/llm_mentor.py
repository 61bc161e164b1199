"""LLM proposals and an LLM mentor, with a scripted stand-in for the LLM (no server needed;
use make_backend("local") or an OpenAI-compatible server for a real one).

    python examples/llm_mentor.py [--smoke]
"""

from __future__ import annotations

from _common import parse

from llmbo import Optimizer
from llmbo.catalyst import Catalyst, CatalystConfig
from llmbo.datasets import load_pool
from llmbo.hpo import sentiment_lexicon_task
from llmbo.optimizer import TableObjective
from llmbo.proposers import BayesianProposer, LLMProposer, WarmStartProposer
from llmbo.surrogates import surrogate_config
from llmbo.testing.llm import ScriptedBackend

args = parse(__doc__.splitlines()[0])

# 1. An LLM names the initial design; BO takes over afterwards.
pool = load_pool("bh1")
space = pool.space()
texts = space.texts
llm = ScriptedBackend(["\n".join(texts[i] for i in (3, 40, 400, 700))])
proposer = WarmStartProposer(LLMProposer(llm), BayesianProposer(surrogate_config("components")),
                             n_initial=4)  # fmt: skip
opt = Optimizer(space, proposer=proposer, seed=0, progress=False)
opt.run(TableObjective(space, "yield"), iterations=6 if args.smoke else 20)
print(opt.history[["trial", "text", "value"]].head(6))

# 2. Prompt tuning with a mentor that proposes restart prompts after epochs 0 and 1.
mentor = ScriptedBackend(["1. rate how positive this word feels\n2. sentiment of the word"] * 3)
task = sentiment_lexicon_task(rows=300 if args.smoke else None)
config = CatalystConfig(
    epochs=2 if args.smoke else 10, mentor_epochs=(0,) if args.smoke else (0, 1, 2)
)
result = Catalyst(task, mentor, config, storage=args.out / "catalyst.db").run()
print(result.best_prompt, result.restarts, result.test_metric)
