"""Tiny-model bootstrap: a byte-level BPE tokenizer trained with `tokenizers`
and a randomly initialised BLOOM or LLaMA of a chosen size, written as a folder
that AutoTokenizer / AutoModelForCausalLM load offline.

Makes every stage testable without a GPU or a model hub; larger sizes give
random-weight models of real shapes for throughput checks."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
SAMPLE_CORPUS = Path(__file__).resolve().parent / "resources" / "sample_corpus.txt"
ARCHITECTURES = ("bloom", "llama")


@dataclass(frozen=True)
class TinyModelSpec:
    arch: str = "bloom"
    vocab_size: int = 2000
    layers: int = 2
    hidden: int = 64
    heads: int = 4
    seed: int = 0
    max_positions: int = 2048

    def check(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"--arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.hidden % self.heads:
            raise ValueError(f"--hidden ({self.hidden}) must be a multiple of --heads ({self.heads})")
        if self.vocab_size < 300:
            raise ValueError("--vocab-size must be at least 300 (256 byte symbols + special tokens)")
        for name in ("layers", "hidden", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be positive")


def train_tokenizer(corpus_text: str, vocab_size: int):
    """A byte-level BPE PreTrainedTokenizerFast with <unk> <s> </s> <pad>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for line in corpus_text.splitlines() if line.strip()]
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=False, **SPECIAL_TOKENS)


def build_model(spec: TinyModelSpec, tokenizer):
    import torch
    from transformers import BloomConfig, BloomForCausalLM, LlamaConfig, LlamaForCausalLM

    ids = {
        # The model gets the requested vocabulary even when a small corpus
        # stops the tokenizer short of it: real shapes for throughput checks
        # (BLOOM's 250,880 rows), ids the tokenizer never emits are harmless.
        "vocab_size": max(len(tokenizer), spec.vocab_size),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(spec.seed)
    if spec.arch == "bloom":
        config = BloomConfig(hidden_size=spec.hidden, n_layer=spec.layers, n_head=spec.heads, **ids)
        return BloomForCausalLM(config)
    config = LlamaConfig(
        hidden_size=spec.hidden,
        intermediate_size=spec.hidden * 8 // 3 // 8 * 8 or 8,  # LLaMA's ~8/3 MLP ratio
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.heads,
        max_position_embeddings=spec.max_positions,
        **ids,
    )
    return LlamaForCausalLM(config)


def make_tiny_model(spec: TinyModelSpec, out: Path, corpus: Path | None = None) -> dict[str, object]:
    """Write tokenizer + model to `out`; returns a summary (also in tiny_model.json)."""
    spec.check()
    text = (corpus or SAMPLE_CORPUS).read_text(encoding="utf-8")
    tokenizer = train_tokenizer(text, spec.vocab_size)
    model = build_model(spec, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)
    summary = {
        "arch": spec.arch,
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": model.config.vocab_size,
        "tokenizer_vocab_size": len(tokenizer),
        "layers": spec.layers,
        "hidden": spec.hidden,
        "heads": spec.heads,
        "seed": spec.seed,
        "corpus": str(corpus) if corpus else "built-in sample",
    }
    (out / "tiny_model.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary
