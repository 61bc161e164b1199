"""The reaction BERT models shipped inside the ``rxnfp`` PyPI package, loaded offline.

``rxnfp`` (Schwaller et al., "Mapping the space of chemical reactions using attention-based
neural networks", Nat. Mach. Intell. 2021) ships small BERT encoders of reaction SMILES in
its wheel. llmbo reads the weights and vocabulary from the installed package directory
without importing the package (whose own imports are heavy), so install it with
``pip install rxnfp --no-deps``.

Aliases:

- ``"rxnfp"``: ``bert_pretrained``, saved with BERT's pretraining heads: self-supervised
  pretraining on reaction SMILES, no labels; it has seen no yields.
- ``"rxnfp-ft"``: ``bert_ft``, that model fine-tuned to classify reactions into named
  reaction classes; no yields either.

The wheel's third model (``bert_ft_10k_25s``) is not offered: its training data is not
documented in the package, so it cannot be ruled out that it saw yield labels.

The models read SMILES split by the regular expression of the rxnfp/Molecular Transformer
tokenizer (one token per atom, bond, ring digit or bracket atom); :func:`smiles_tokenizer`
does that split, then looks each piece up in the model's vocabulary.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from llmbo.errors import MissingDependencyError, ModelLoadError

__all__ = ["RXNFP_MODELS", "SMILES_TOKEN_PATTERN", "rxnfp_model_dir", "smiles_tokenizer"]

#: Alias -> model folder inside the installed ``rxnfp`` package.
RXNFP_MODELS: dict[str, str] = {"rxnfp": "bert_pretrained", "rxnfp-ft": "bert_ft"}

#: SMILES tokenisation regex used by rxnfp (from the Molecular Transformer).
SMILES_TOKEN_PATTERN = (
    r"(\%\([0-9]{3}\)|\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\||\(|\)|\.|=|#|-|\+|\\|\/"
    r"|:|~|@|\?|>>?|\*|\$|\%[0-9]{2}|[0-9])"
)


def rxnfp_model_dir(alias: str) -> Path:
    """Folder of the rxnfp model named by ``alias`` (``"rxnfp"`` or ``"rxnfp-ft"``).

    Raises:
        MissingDependencyError: ``rxnfp`` is not installed.
        ModelLoadError: the installed package lacks the model files.
    """
    folder = RXNFP_MODELS[alias.lower()]
    spec = importlib.util.find_spec("rxnfp")  # locate without importing its dependencies
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            f"Model {alias!r} is the reaction BERT shipped in the 'rxnfp' package, which is not "
            "installed. Install it without its heavy dependencies: pip install rxnfp --no-deps"
        )
    path = Path(spec.origin).parent / "models" / "transformers" / folder
    if not (path / "config.json").exists() or not (path / "vocab.txt").exists():
        raise ModelLoadError(
            f"The rxnfp package at {path.parent} has no complete {folder!r} model; reinstall "
            "it with: pip install --force-reinstall --no-deps rxnfp"
        )
    return path


def smiles_tokenizer(vocab_file: str | Path, model_max_length: int = 512) -> Any:
    """A fast BERT-style tokenizer for SMILES over ``vocab_file`` (one token per line).

    The text is split by :data:`SMILES_TOKEN_PATTERN` into chemical tokens, each looked up
    whole in the vocabulary (missing ones become ``[UNK]``), and wrapped as
    ``[CLS] ... [SEP]``, as rxnfp's own tokenizer does.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = Path(vocab_file).read_text(encoding="utf-8").splitlines()
    vocab = {tok: i for i, tok in enumerate(tokens) if tok}
    for special in ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"):
        if special not in vocab:
            raise ModelLoadError(f"The vocabulary {vocab_file} has no {special} token.")
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(SMILES_TOKEN_PATTERN), "isolated")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )
