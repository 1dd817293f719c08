"""What differs between the stages that share the DeepSpeed loop in trainer.py.

A `StageRecipe` says how a stage loads its model, encodes its data, computes
the loss of one micro-batch, evaluates and saves its output; `Trainer` owns
everything else (data order, gradient accumulation, SIGTERM, checkpoints,
resume, progress). pt and sft are `LmStage`; rm (rm_stage.py) and dpo
(dpo.py) build on `PairStage`. ppo has its own loop (ppo.py).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training_jobs.config import ConfigError, JobConfig, LORA_TARGETS
from training_jobs.data import IGNORE_INDEX, EncodedData, collate, encode_corpus, encode_instructions
from training_jobs.pairs import EncodedPairs, Pair, encode_preferences


@dataclass
class MicroResult:
    """One micro-batch: the loss to backpropagate, its non-pad tokens, and
    stage statistics (one value per name in `StageRecipe.train_stats`; the
    progress stream reports their mean over the log window)."""

    loss: torch.Tensor
    tokens: int
    stats: dict[str, float] = field(default_factory=dict)


class StageRecipe(ABC):
    """The per-stage half of a training job. `data` is whatever `encode`
    returns; the trainer only asks it for `lengths` (one per example, used
    for batching), `dropped` and `notes`."""

    #: sft-style length grouping of micro-batches (see data.plan_batches)
    group_by_length: bool = False
    #: names of MicroResult.stats, in the order they appear in `metrics` events
    train_stats: tuple[str, ...] = ()

    def __init__(self, config: JobConfig) -> None:
        self.config = config

    @abstractmethod
    def load(self) -> tuple[torch.nn.Module, Any]:
        """(trainable module, tokenizer) — fp32 master weights."""

    @abstractmethod
    def encode(self, tokenizer: Any, path: str, field_name: str) -> Any: ...

    @abstractmethod
    def lengths(self, data: Any) -> list[int]: ...

    def prepare(self, engine: Any) -> None:
        """Called once the DeepSpeed engine exists (e.g. to set up a reference model)."""

    @abstractmethod
    def collate(self, data: Any, indices: list[int], device: Any) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def train_micro(self, engine: Any, batch: dict[str, torch.Tensor]) -> MicroResult: ...

    @abstractmethod
    def evaluate(self, engine: Any, data: Any) -> dict[str, float]:
        """Metrics over the whole eval set (engine already in eval mode,
        gradients off). Every rank runs every batch so that ZeRO-3's
        collective forward stays in lockstep."""

    @abstractmethod
    def eval_summary(self, last_eval: dict[str, Any] | None) -> dict[str, Any]:
        """The eval fields of metrics.json (None when there was no eval)."""

    @abstractmethod
    def save(self, module: torch.nn.Module, tokenizer: Any, output_dir: Path) -> None:
        """Write the model on rank 0 (ZeRO-3 parameters already gathered)."""

    def eval_order(self, data: Any) -> list[int]:
        """Eval examples by length, so batches pad little."""
        lengths = self.lengths(data)
        return sorted(range(len(lengths)), key=lambda i: lengths[i])


# --- models ------------------------------------------------------------------------


def load_tokenizer(folder: str | Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lora_config(config: JobConfig, model_type: str, task_type: str, dropout: float | None = None) -> Any:
    """PEFT's LoraConfig of the job's `lora`; `dropout` overrides
    `lora.dropout` (ppo's policy runs without dropout)."""
    from peft import LoraConfig as PeftLoraConfig

    assert config.lora is not None
    targets = config.lora.target_modules or LORA_TARGETS.get(model_type)
    if not targets:
        raise ConfigError(f"lora.target_modules: no default for model type {model_type!r}; list the modules")
    return PeftLoraConfig(
        r=config.lora.r, lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout if dropout is None else dropout,
        target_modules=targets, task_type=task_type,
    )


def load_model(config: JobConfig) -> tuple[Any, Any]:
    """The causal LM of `base_model` (LoRA-wrapped when configured) and its tokenizer."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(config.base_model)
    # fp32 master weights; DeepSpeed casts the module for bf16/fp16 training.
    model = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=torch.float32)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if config.lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(config, model.config.model_type, "CAUSAL_LM"))
    return model, tokenizer


def save_causal_lm(config: JobConfig, module: Any, tokenizer: Any, output_dir: Path) -> None:
    """save_pretrained model + tokenizer; a LoRA model is merged for serving
    and its adapter kept in adapter/."""
    if config.lora is not None:
        module.save_pretrained(output_dir / "adapter")
        module = module.merge_and_unload()
    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    module.save_pretrained(output_dir, state_dict=state, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)


# --- pt / sft ------------------------------------------------------------------------


class LmStage(StageRecipe):
    """pt and sft: next-token loss on the labelled tokens (see data.py)."""

    def __init__(self, config: JobConfig) -> None:
        super().__init__(config)
        self.group_by_length = config.stage == "sft"

    def load(self) -> tuple[Any, Any]:
        model, tokenizer = load_model(self.config)
        self.pad_id = tokenizer.pad_token_id
        return model, tokenizer

    def encode(self, tokenizer: Any, path: str, field_name: str) -> EncodedData:
        config = self.config
        if config.stage == "pt":
            return encode_corpus(path, tokenizer, config.max_length, field_name)
        return encode_instructions(path, tokenizer, config.prompt_template, config.max_length, field_name)

    def lengths(self, data: EncodedData) -> list[int]:
        return [len(e.input_ids) for e in data.examples]

    def collate(self, data: EncodedData, indices: list[int], device: Any) -> dict[str, torch.Tensor]:
        batch = collate([data.examples[i] for i in indices], self.pad_id)
        return {k: v.to(device) for k, v in batch.items()}

    def train_micro(self, engine: Any, batch: dict[str, torch.Tensor]) -> MicroResult:
        return MicroResult(loss=engine(**batch).loss, tokens=int(batch["attention_mask"].sum()))

    def evaluate(self, engine: Any, data: EncodedData) -> dict[str, float]:
        """Token-weighted mean loss and its perplexity."""
        total_loss, total_tokens = 0.0, 0
        size = self.config.micro_batch_size
        order = self.eval_order(data)
        for start in range(0, len(order), size):
            batch = self.collate(data, order[start : start + size], engine.device)
            counted = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            if counted == 0:
                continue
            loss = engine(**batch).loss
            total_loss += float(loss) * counted
            total_tokens += counted
        eval_loss = total_loss / max(total_tokens, 1)
        return {"eval_loss": eval_loss, "perplexity": math.exp(min(eval_loss, 50.0))}

    def eval_summary(self, last_eval: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "eval_loss": last_eval["eval_loss"] if last_eval else None,
            "perplexity": last_eval["perplexity"] if last_eval else None,
        }

    def save(self, module: Any, tokenizer: Any, output_dir: Path) -> None:
        save_causal_lm(self.config, module, tokenizer, output_dir)


# --- preference pairs (rm, dpo) -----------------------------------------------------------


def collate_pairs(pairs: list[Pair], pad_id: int) -> dict[str, torch.Tensor]:
    """B pairs as one right-padded batch of 2B rows: [chosen…; rejected…].
    `labels` are the token ids on response tokens (the EOS included) and
    IGNORE_INDEX on prompt and padding."""
    rows = [(p.chosen, p.prompt_length) for p in pairs] + [(p.rejected, p.rejected_prompt_length) for p in pairs]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (ids, prompt_length) in enumerate(rows):
        tokens = torch.tensor(ids)
        input_ids[row, : len(ids)] = tokens
        labels[row, prompt_length : len(ids)] = tokens[prompt_length:]
        attention[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class PairStage(StageRecipe):
    """Stages trained on preference rows {"prompt","chosen","rejected"}
    (pairs.py renders them); a micro-batch of B pairs is one forward pass
    over 2B sequences."""

    group_by_length = True
    pad_id: int

    def encode(self, tokenizer: Any, path: str, field_name: str) -> EncodedPairs:
        return encode_preferences(path, tokenizer, self.config.prompt_template, self.config.max_length, field_name)

    def lengths(self, data: EncodedPairs) -> list[int]:
        return [max(len(p.chosen), len(p.rejected)) for p in data.pairs]

    def collate(self, data: EncodedPairs, indices: list[int], device: Any) -> dict[str, torch.Tensor]:
        batch = collate_pairs([data.pairs[i] for i in indices], self.pad_id)
        return {k: v.to(device) for k, v in batch.items()}

    def evaluate_pairs(self, engine: Any, data: EncodedPairs, stat_names: tuple[str, ...]) -> dict[str, float]:
        """Pair-weighted means of the loss and `stat_names` over the eval set
        (the micro-batch statistics are means over their pairs)."""
        totals = dict.fromkeys(("eval_loss", *stat_names), 0.0)
        count = 0
        size = self.config.micro_batch_size
        order = self.eval_order(data)
        for start in range(0, len(order), size):
            indices = order[start : start + size]
            result = self.train_micro(engine, self.collate(data, indices, engine.device))
            totals["eval_loss"] += float(result.loss) * len(indices)
            for name in stat_names:
                totals[name] += result.stats[name] * len(indices)
            count += len(indices)
        return {name: value / max(count, 1) for name, value in totals.items()}


def recipe_for(config: JobConfig) -> StageRecipe:
    if config.stage in ("pt", "sft"):
        return LmStage(config)
    if config.stage == "rm":
        from training_jobs.rm_stage import RewardStage

        return RewardStage(config)
    if config.stage == "dpo":
        from training_jobs.dpo import DpoStage

        return DpoStage(config)
    raise ConfigError(f"stage: {config.stage} does not run in the shared trainer")
