"""Stage dpo: direct preference optimisation of a policy (the SFT model)
against a frozen reference, on preference pairs.

Loss (Rafailov et al. 2023, "Direct Preference Optimization: Your Language
Model is Secretly a Reward Model", eq. 7), per pair with
x = (log πθ(y_w|x) − log π_ref(y_w|x)) − (log πθ(y_l|x) − log π_ref(y_l|x)):
    L = −log σ(β·x)
and with label smoothing ε (conservative DPO, Mitchell 2023, "A note on DPO
with noisy preferences"; ε = assumed share of flipped labels):
    L = −(1 − ε)·log σ(β·x) − ε·log σ(−β·x).
log π(y|x) is summed over the response tokens only, the EOS included
(labels -100 on prompt and padding, stages.collate_pairs). The implicit
rewards β·(log πθ − log π_ref) of chosen and rejected give the statistics:
their margin, the share of pairs where chosen's is higher (reward accuracy),
and the summed log-probs of chosen and rejected under the policy.

The reference: when the policy is a LoRA model of the reference itself, the
reference log-probs come from the same module with its adapter disabled (no
second copy in memory); otherwise a frozen copy of `dpo.reference_model`
(default: base_model) runs in a DeepSpeed inference engine (ZeRO-3-sharded
when the job uses ZeRO-3, as DeepSpeed-Chat does for its reference).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from training_jobs.config import ConfigError
from training_jobs.data import IGNORE_INDEX
from training_jobs.dsconfig import deepspeed_config
from training_jobs.pairs import EncodedPairs
from training_jobs.stages import MicroResult, PairStage, load_model, load_tokenizer, save_causal_lm

STATS = ("reward_margin", "reward_accuracy", "chosen_reward", "rejected_reward", "chosen_logps", "rejected_logps")


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Σ_t log p(labels[t] | tokens < t) over the labelled positions of each
    row: [rows]. logits[:, t] predicts token t + 1."""
    logits = logits[:, :-1].float()
    targets = labels[:, 1:]
    counted = targets != IGNORE_INDEX
    picked = logits.gather(2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    # log_softmax at the picked token, without materialising the full log_softmax.
    token_logps = picked - logits.logsumexp(-1)
    return (token_logps * counted).sum(-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean loss, chosen rewards, rejected rewards) — formulas in the module docstring."""
    chosen_rewards = beta * (policy_chosen - reference_chosen)
    rejected_rewards = beta * (policy_rejected - reference_rejected)
    logits = chosen_rewards - rejected_rewards  # β·x
    losses = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return losses.mean(), chosen_rewards.detach(), rejected_rewards.detach()


def same_folder(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


class DpoStage(PairStage):
    train_stats = STATS

    def load(self) -> tuple[Any, Any]:
        model, tokenizer = load_model(self.config)
        self.pad_id = tokenizer.pad_token_id
        self.vocab = tokenizer.get_vocab()
        return model, tokenizer

    def prepare(self, engine: Any) -> None:
        config = self.config
        folder = config.dpo.reference_model or config.base_model
        # A LoRA policy of the reference itself: its adapter off is the reference.
        self.reference: Any = None
        if config.lora is not None and same_folder(folder, config.base_model):
            return
        if load_tokenizer(folder).get_vocab() != self.vocab:
            raise ConfigError(f"dpo.reference_model: the tokenizer of {folder} differs from base_model's")
        self.reference = self._reference_engine(folder, engine)

    def _reference_engine(self, folder: str, engine: Any) -> Any:
        import deepspeed
        from transformers import AutoModelForCausalLM

        config = self.config
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model.requires_grad_(False)
        model.eval()
        ds = deepspeed_config(config, engine.world_size)
        # Inference only: no optimizer state to shard; ZeRO-3 (and its
        # parameter offload) only to split the weights as the policy's are.
        zero: dict[str, Any] = {"stage": 3 if config.zero_stage == 3 else 0}
        if config.offload_params:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
        ds["zero_optimization"] = zero
        ds.pop("gradient_clipping", None)
        reference, *_ = deepspeed.initialize(model=model, config=ds)
        reference.eval()
        return reference

    @torch.no_grad()
    def _reference_logps(self, engine: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
        if self.reference is not None:
            return sequence_logps(self.reference(**inputs).logits, batch["labels"])
        module = engine.module
        was_training = module.training
        module.eval()  # no LoRA dropout in the reference
        try:
            with module.disable_adapter():
                logits = module(**inputs).logits
        finally:
            module.train(was_training)
        return sequence_logps(logits, batch["labels"])

    def train_micro(self, engine: Any, batch: dict[str, torch.Tensor]) -> MicroResult:
        pairs = batch["input_ids"].shape[0] // 2
        reference = self._reference_logps(engine, batch)
        logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        policy = sequence_logps(logits, batch["labels"])
        dpo = self.config.dpo
        loss, chosen_rewards, rejected_rewards = dpo_loss(
            policy[:pairs], policy[pairs:], reference[:pairs], reference[pairs:], dpo.beta, dpo.label_smoothing
        )
        margins = chosen_rewards - rejected_rewards
        stats = {
            "reward_margin": float(margins.mean()),
            "reward_accuracy": float((margins > 0).float().mean()),
            "chosen_reward": float(chosen_rewards.mean()),
            "rejected_reward": float(rejected_rewards.mean()),
            "chosen_logps": float(policy[:pairs].detach().mean()),
            "rejected_logps": float(policy[pairs:].detach().mean()),
        }
        return MicroResult(loss=loss, tokens=int(batch["attention_mask"].sum()), stats=stats)

    def evaluate(self, engine: Any, data: EncodedPairs) -> dict[str, float]:
        return self.evaluate_pairs(engine, data, STATS)

    def eval_summary(self, last_eval: dict[str, Any] | None) -> dict[str, Any]:
        return {name: last_eval[name] if last_eval else None for name in ("eval_loss", *STATS)}

    def save(self, module: Any, tokenizer: Any, output_dir: Path) -> None:
        save_causal_lm(self.config, module, tokenizer, output_dir)
