"""The job config: the JSON a job hands to `python -m training_jobs run`.

Typed and validated with pydantic; every error names its field, and
`python -m training_jobs schema` exports the JSON Schema from which the web
app generates its forms. Stage defaults come from the seed's recipe:
pt — lr 1e-5, max_length 512, global batch 256, 3 epochs, warmup 10%;
sft — lr 2e-5, max_length 1024, global batch 64, 2 epochs, warmup 10%, full
fine-tuning; rm — lr 2e-5, max_length 512, global batch 64, 5 epochs, warmup
10%; ppo — LoRA r=32 on attention, batch 16, prompt 256 + response 256 tokens,
actor lr 9.65e-6, critic lr 5e-6, 3 epochs. dpo is beyond the seed (sigmoid
loss, beta 0.1).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Stage = Literal["pt", "sft", "rm", "ppo", "dpo"]

# The seed's template: `User: {prompt}\n\nBot: `.
DEFAULT_PROMPT_TEMPLATE = "User: {prompt}\n\nBot: "
CHAT_TEMPLATE = "chat_template"  # use the tokenizer's own chat template

STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    "pt": {"learning_rate": 1e-5, "max_length": 512, "global_batch_size": 256, "epochs": 3, "warmup_ratio": 0.1},
    "sft": {"learning_rate": 2e-5, "max_length": 1024, "global_batch_size": 64, "epochs": 2, "warmup_ratio": 0.1},
    "rm": {"learning_rate": 2e-5, "max_length": 512, "global_batch_size": 64, "epochs": 5, "warmup_ratio": 0.1},
    # max_length = prompt_length + response_length; learning_rate is the actor's.
    "ppo": {
        "learning_rate": 9.65e-6, "max_length": 512, "global_batch_size": 16, "epochs": 3, "warmup_ratio": 0.1,
        "lora": {"r": 32, "alpha": 32.0, "dropout": 0.0},
    },
    "dpo": {"learning_rate": 1e-6, "max_length": 512, "global_batch_size": 64, "epochs": 1, "warmup_ratio": 0.1},
}

# LoRA target modules per architecture (model_type in config.json).
LORA_TARGETS: dict[str, list[str]] = {
    "bloom": ["query_key_value"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


class ConfigError(Exception):
    """A job config that cannot run; each line of str() names a field."""


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, le=1024, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | None = Field(
        None, description="modules to adapt; default per architecture (BLOOM query_key_value, LLaMA q/k/v/o_proj)"
    )


class PpoConfig(BaseModel):
    """PPO settings (DeepSpeed-Chat's step_3 recipe; formulas in ppo.py)."""

    model_config = ConfigDict(extra="forbid")

    prompt_length: int = Field(256, ge=4, description="prompt tokens kept (the oldest are cut); prompts are left-padded")
    response_length: int = Field(256, ge=1, description="most response tokens sampled; generation stops at EOS")
    critic_learning_rate: float = Field(5e-6, gt=0, lt=1)
    critic_zero_stage: Literal[0, 1, 2, 3] | None = Field(None, description="the critic's ZeRO stage; default: zero_stage")
    ppo_epochs: int = Field(1, ge=1, description="passes over each batch of experience")
    kl_coef: float = Field(0.1, ge=0, description="per-token KL penalty against the reference policy")
    clip_reward: float = Field(5.0, gt=0, description="the reward model's score is clipped to ±clip_reward")
    gamma: float = Field(1.0, ge=0, le=1, description="GAE discount")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    clip_ratio: float = Field(0.2, gt=0, lt=1, description="policy ratio clipped to [1 − c, 1 + c]")
    clip_value: float = Field(0.2, gt=0, description="critic values clipped to old ± c")
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0, description="0: no top-k cut")
    top_p: float = Field(1.0, gt=0, le=1)
    ema: bool = Field(True, description="keep an EMA of the actor (the seed's recipe) and save it to ema/")
    ema_decay: float = Field(0.992, gt=0, lt=1, description="ema ← decay·ema + (1 − decay)·actor after each step")
    ptx_data: str | None = Field(None, description="pre-training corpus JSONL for the optional PTX (LM) loss")
    ptx_coef: float = Field(0.0, ge=0, description="weight of the PTX loss; 0 disables it")
    offload_reference: bool = Field(False, description="keep the frozen reference and reward models on the CPU")


class DpoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beta: float = Field(0.1, gt=0, description="strength of the implicit KL constraint (sigmoid DPO loss)")
    reference_model: str | None = Field(None, description="frozen reference policy folder; default: base_model")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="conservative DPO: assumed share of flipped labels")


class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Stage = Field(
        description="pt: continued pre-training on a corpus; sft: supervised fine-tuning; rm: reward model; "
        "ppo: RLHF with PPO; dpo: direct preference optimisation"
    )
    base_model: str = Field(
        description="folder of the model to start from (AutoModelForCausalLM); rm: the transformer under the value head; "
        "ppo/dpo: the SFT policy"
    )
    reward_model: str | None = Field(None, description="ppo: folder of the reward model (an rm output); also the critic's start")
    train_data: str = Field(
        description="canonical JSONL: pt {text}; sft {prompt,response} or {messages}; rm/dpo {prompt,chosen,rejected}; "
        "ppo {prompt}"
    )
    eval_data: str | None = Field(None, description="held-out JSONL of the same kind")
    output_dir: str = Field(description="folder for checkpoints, progress.jsonl and the final model")

    max_length: int = Field(ge=8, le=131072, description="tokens per sequence")
    global_batch_size: int = Field(ge=1, description="sequences per optimizer step, all ranks together")
    micro_batch_size: int = Field(1, ge=1, description="sequences per forward pass per rank")
    learning_rate: float = Field(gt=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(ge=0, lt=1)
    epochs: float | None = Field(None, gt=0, description="passes over the data (ignored when max_steps is set)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, ge=0, description="max gradient norm; 0 disables clipping")
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False
    offload_params: bool = False
    gradient_checkpointing: bool = False
    lora: LoraConfig | None = Field(None, description="train a LoRA adapter instead of every weight")
    prompt_template: str = Field(
        DEFAULT_PROMPT_TEMPLATE,
        description=f"sft: a template with {{prompt}}, or '{CHAT_TEMPLATE}' for the tokenizer's chat template",
    )
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(0, ge=0, description="steps between evaluations; 0: only at the end")
    save_every: int = Field(0, ge=0, description="steps between checkpoints; 0: only on SIGTERM")
    keep_checkpoints: int = Field(2, ge=1)
    seed: int = 42
    ppo: PpoConfig = Field(default_factory=PpoConfig, description="ppo stage settings")
    dpo: DpoConfig = Field(default_factory=DpoConfig, description="dpo stage settings")

    @model_validator(mode="before")
    @classmethod
    def _stage_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("stage") in STAGE_DEFAULTS:
            return {**STAGE_DEFAULTS[data["stage"]], **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> JobConfig:
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"global_batch_size ({self.global_batch_size}) must be a multiple of micro_batch_size ({self.micro_batch_size})"
            )
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set epochs or max_steps")
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offload_params needs zero_stage 3")
        if self.offload_optimizer and self.zero_stage == 0:
            raise ValueError("offload_optimizer needs zero_stage 1, 2 or 3")
        if self.stage == "ppo":
            if not self.reward_model:
                raise ValueError("reward_model: stage ppo needs the reward model's folder")
            if self.ppo.prompt_length + self.ppo.response_length > self.max_length:
                raise ValueError(
                    f"max_length: {self.max_length} cannot hold ppo.prompt_length + ppo.response_length "
                    f"({self.ppo.prompt_length} + {self.ppo.response_length})"
                )
        elif self.reward_model:
            raise ValueError(f"reward_model: only stage ppo takes a reward model, not {self.stage}")
        if self.stage != "pt" and self.prompt_template != CHAT_TEMPLATE and "{prompt}" not in self.prompt_template:
            raise ValueError("prompt_template must contain {prompt} (or be 'chat_template')")
        return self

    def gradient_accumulation(self, world_size: int) -> int:
        per_step = self.micro_batch_size * world_size
        if self.global_batch_size % per_step:
            raise ConfigError(
                f"global_batch_size: {self.global_batch_size} is not a multiple of "
                f"micro_batch_size × ranks = {self.micro_batch_size} × {world_size}"
            )
        return self.global_batch_size // per_step


def _names_a_field(message: str) -> bool:
    """A cross-field check's message that starts with the field it is about
    (`max_length: …`, `reward_model: …`), reported on that field."""
    head, sep, _ = message.partition(": ")
    return bool(sep) and head.split(".", 1)[0] in JobConfig.model_fields


def _format(error: ValidationError) -> str:
    errors = error.errors()
    # A bad stage makes every stage default "missing": report the cause only.
    stage_errors = [item for item in errors if tuple(item["loc"]) == ("stage",)]
    lines = []
    for item in stage_errors or errors:
        field = ".".join(str(part) for part in item["loc"]) or "config"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        if not item["loc"] and _names_a_field(message):
            lines.append(message)  # a cross-field check that names its field
            continue
        lines.append(f"{field}: {message}")
    return "\n".join(lines)


def parse_config(data: Any) -> JobConfig:
    try:
        return JobConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None


def load_config(path: str | Path) -> JobConfig:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config: file {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return parse_config(data)


def json_schema() -> dict[str, Any]:
    schema = JobConfig.model_json_schema()
    schema["x-stage-defaults"] = STAGE_DEFAULTS
    return schema
