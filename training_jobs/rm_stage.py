"""Stage rm: a reward model trained on preference pairs with DeepSpeed-Chat's
token-level pairwise loss (reward.pairwise_loss; the recipe of
dschat step2_reward_model_finetuning).

A micro-batch of B pairs is one forward pass over [chosen…; rejected…],
right-padded to a common width. Statistics: pairwise accuracy (chosen score >
rejected score) and the mean chosen and rejected scores, where a score is the
value at the EOS after the response (the last attended token).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training_jobs.pairs import EncodedPairs
from training_jobs.reward import RewardModel, build_reward_model, is_reward_model, pairwise_loss, save_reward_model
from training_jobs.stages import MicroResult, PairStage, load_tokenizer, lora_config

STATS = ("accuracy", "chosen_score", "rejected_score")


class RewardStage(PairStage):
    train_stats = STATS

    def load(self) -> tuple[RewardModel, Any]:
        config = self.config
        tokenizer = load_tokenizer(config.base_model)
        self.pad_id = tokenizer.pad_token_id
        # The transformer of a causal LM, or of a reward model with its head
        # (to continue training one).
        model = build_reward_model(config.base_model, torch.float32)
        if not is_reward_model(config.base_model):
            # A fresh head gets nn.Linear's default init (seeded), as in
            # DeepSpeed-Chat, not build_reward_model's zeros: with a zero
            # head the transformer gets no gradient until the head has moved.
            model.v_head.reset_parameters()
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if config.lora is not None:
            from peft import get_peft_model

            # Only the transformer is adapted; the value head stays fully trainable.
            model.transformer = get_peft_model(
                model.transformer, lora_config(config, model.config.model_type, "FEATURE_EXTRACTION")
            )
        return model, tokenizer

    def train_micro(self, engine: Any, batch: dict[str, torch.Tensor]) -> MicroResult:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        pairs = ids.shape[0] // 2
        # The loss in fp32 whatever the training precision.
        values = engine(ids, mask).float()
        loss, chosen, rejected = pairwise_loss(
            values[:pairs], values[pairs:], ids[:pairs], ids[pairs:], mask[:pairs], mask[pairs:]
        )
        stats = {
            "accuracy": float((chosen > rejected).float().mean()),
            "chosen_score": float(chosen.mean()),
            "rejected_score": float(rejected.mean()),
        }
        return MicroResult(loss=loss, tokens=int(mask.sum()), stats=stats)

    def evaluate(self, engine: Any, data: EncodedPairs) -> dict[str, float]:
        return self.evaluate_pairs(engine, data, STATS)

    def eval_summary(self, last_eval: dict[str, Any] | None) -> dict[str, Any]:
        return {name: last_eval[name] if last_eval else None for name in ("eval_loss", *STATS)}

    def save(self, module: RewardModel, tokenizer: Any, output_dir: Path) -> None:
        if self.config.lora is not None:
            module.transformer.save_pretrained(output_dir / "adapter")
            module.transformer = module.transformer.merge_and_unload()
        save_reward_model(
            module, tokenizer, output_dir, prompt_template=self.config.prompt_template, max_length=self.config.max_length
        )
