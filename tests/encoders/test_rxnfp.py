"""The rxnfp reaction BERT: SMILES tokenizer, offline loading and the output-block LoRA."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from llmbo.encoders.rxnfp import rxnfp_model_dir, smiles_tokenizer
from llmbo.errors import MissingDependencyError, ModelLoadError

REACTION = (
    "Clc1ccccn1.Cc1ccc(N)cc1.O=S(=O)(O[Pd]1c2ccccc2-c2ccccc2N~1)C(F)(F)F>>Cc1ccc(Nc2ccccn2)cc1"
)
HAVE_RXNFP = importlib.util.find_spec("rxnfp") is not None


def _vocab(tmp_path: Path, tokens: list[str]) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *tokens]) + "\n")
    return path


def test_smiles_tokenizer_splits_chemical_tokens(tmp_path: Path) -> None:
    tok = smiles_tokenizer(_vocab(tmp_path, ["C", "Cl", "c", "1", "(", ")", "[Pd]", ">>", "N"]))
    ids = tok("Clc1ccc(C)c1>>[Pd]N")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == [
        "[CLS]", "Cl", "c", "1", "c", "c", "c", "(", "C", ")", "c", "1", ">>", "[Pd]", "N", "[SEP]",
    ]  # fmt: skip
    # Bromine is one token of the regex but missing from this vocabulary: one [UNK], not two.
    unknown = tok.convert_ids_to_tokens(tok("CBr")["input_ids"])
    assert unknown == ["[CLS]", "C", "[UNK]", "[SEP]"]
    batch = tok(["CC", "CCCC"], padding=True, return_tensors="pt")
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]


def test_smiles_tokenizer_needs_the_special_tokens(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\nC\n")
    with pytest.raises(ModelLoadError, match=r"\[UNK\]"):
        smiles_tokenizer(path)


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="pip install rxnfp --no-deps"):
        rxnfp_model_dir("rxnfp")


@pytest.mark.skipif(not HAVE_RXNFP, reason="rxnfp is not installed")
def test_packaged_reaction_bert_loads_offline_and_reads_reactions() -> None:
    from llmbo.benchmarks.methods import fast_lora_module
    from llmbo.encoders.transformer import load_pretrained, model_type

    net, tok, config = load_pretrained("rxnfp")
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("bert", 12, 256)
    ids = tok(REACTION)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) > 60
    assert model_type("rxnfp") == "bert" and fast_lora_module("rxnfp") == "output"
    with torch.no_grad():
        out = net(**tok([REACTION], return_tensors="pt")).last_hidden_state
    assert out.shape == (1, len(ids), 256) and torch.isfinite(out).all()


@pytest.mark.skipif(not HAVE_RXNFP, reason="rxnfp is not installed")
def test_output_block_lora_on_the_reaction_bert_matches_its_forward_pass() -> None:
    """The cached top-module path is checked against the full model at ``prepare``."""
    from llmbo.encoders.transformer import EncoderConfig, TextEncoder

    texts = [REACTION, REACTION.replace("Clc1ccccn1", "Brc1ccccn1"), "CCO>>CC=O"]
    encoder = TextEncoder(EncoderConfig(model="rxnfp", device="cpu"), lora={}, top_module="output")
    encoder.prepare(texts)  # raises ModelLoadError if the cached path disagrees
    feats = encoder.embed()
    assert feats.shape == (3, 256) and not torch.allclose(feats[0], feats[1])
