"""Bring your own Hugging Face model: any local folder (or hub id you have cached) works as
``model=``. Here a small BERT is built from a config, as a stand-in for a downloaded one.

    python examples/own_model.py [--smoke]
"""

from __future__ import annotations

import pandas as pd
import torch
from _common import parse
from transformers import BertConfig, BertModel, BertTokenizerFast

from llmbo import CandidateSpace, Optimizer
from llmbo.optimizer import TableObjective

args = parse(__doc__.splitlines()[0])
folder = args.out / "my-bert"
words = ["red", "green", "blue", "cat", "dog", "fox", "in", "the", "forest", "city", "river"]
(folder).mkdir(exist_ok=True)
(folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
torch.manual_seed(0)
config = BertConfig(vocab_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64)  # fmt: skip
BertModel(config).save_pretrained(folder)
BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)

rows = [{"color": c, "animal": a, "place": p, "y": float((a == "fox") * 3 + i)}
        for i, c in enumerate(["red", "green", "blue"]) for a in ["cat", "dog", "fox"]
        for p in ["forest", "city", "river"]]  # fmt: skip
space = CandidateSpace(pd.DataFrame(rows), "{color} {animal} in the {place}")
opt = Optimizer(space, "lora", model=str(folder), seed=0, progress=False)
opt.run(TableObjective(space, "y"), iterations=4 if args.smoke else 15)
print(opt.best(3))
