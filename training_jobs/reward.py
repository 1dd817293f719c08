"""The reward model: a base transformer (no LM head) and a linear value head
`hidden → 1` without bias, applied at every token (DeepSpeed-Chat's
`RewardModel`, dschat/utils/model/reward_model.py).

A sequence is scored by the value at its last attended token — the EOS that
`pairs.sequence` appends after every response, in rm training and in PPO
alike. The position comes from the attention mask, so a tokenizer whose pad
token is its EOS is scored at the same token in both (DeepSpeed-Chat looks for
the first PAD id instead, which with pad == eos reads the wrong token).

Folder layout (what `save_reward_model` writes and `load_reward_model` reads):
the transformer's `save_pretrained` files and tokenizer, `value_head.safetensors`
(`weight`: [1, hidden]) and `reward_model.json` ({"kind": "reward", ...}).
`AutoModel` alone loads the transformer from it (the registry checks that).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training_jobs.config import DEFAULT_PROMPT_TEMPLATE

VALUE_HEAD_FILE = "value_head.safetensors"
MARKER_FILE = "reward_model.json"


class RewardModel(nn.Module):
    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer
        self.config = transformer.config
        self.v_head = nn.Linear(transformer.config.hidden_size, 1, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Values [batch, seq]: the head applied to every token's last hidden state."""
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        return self.v_head(hidden).squeeze(-1)

    def gradient_checkpointing_enable(self) -> None:
        self.transformer.gradient_checkpointing_enable()


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last attended token (right padding)."""
    return attention_mask.long().sum(-1) - 1


def sequence_scores(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Each row's value at its last attended token: [batch]."""
    index = last_token_index(attention_mask).clamp(min=0)
    return values.gather(1, index.unsqueeze(1)).squeeze(1)


def pairwise_loss(
    chosen_values: torch.Tensor,
    rejected_values: torch.Tensor,
    chosen_ids: torch.Tensor,
    rejected_ids: torch.Tensor,
    chosen_mask: torch.Tensor,
    rejected_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DeepSpeed-Chat's token-level pairwise loss (reward_model.py, forward):
    for pair i, c_end / r_end = first padding index of chosen / rejected (the
    sequence length when unpadded); div = first index where the two token
    sequences differ (a padded position differs from a token); when they never
    differ, end = c_end and div = end − 1, else end = max(c_end, r_end);
    loss_i = −mean_{t ∈ [div, end)} log σ(chosen_values[t] − rejected_values[t]);
    the loss is the mean over pairs. Ends come from the masks, not from a pad id.

    Returns (loss, chosen scores, rejected scores); scores are the values at
    each sequence's last attended token."""
    width = max(chosen_ids.shape[1], rejected_ids.shape[1])
    chosen_values = _pad_to(chosen_values, width, 0.0)
    rejected_values = _pad_to(rejected_values, width, 0.0)
    c_ids, r_ids = _pad_to(chosen_ids, width, -1), _pad_to(rejected_ids, width, -1)
    c_mask, r_mask = _pad_to(chosen_mask, width, 0), _pad_to(rejected_mask, width, 0)
    # Padding never equals a token but equals padding: mark it -1 on both
    # sides (real ids are ≥ 0), so an identical pair padded in a wider batch
    # has no divergence (distinct marks would put div at its end: an empty
    # slice, a NaN loss).
    c_tokens = torch.where(c_mask.bool(), c_ids, torch.full_like(c_ids, -1))
    r_tokens = torch.where(r_mask.bool(), r_ids, torch.full_like(r_ids, -1))
    losses = []
    for i in range(c_ids.shape[0]):
        c_end, r_end = int(c_mask[i].sum()), int(r_mask[i].sum())
        differ = (c_tokens[i] != r_tokens[i]).nonzero()
        if len(differ) == 0:
            end = c_end
            div = end - 1
        else:
            end = max(c_end, r_end)
            div = int(differ[0])
        margin = chosen_values[i, div:end] - rejected_values[i, div:end]
        losses.append(-torch.nn.functional.logsigmoid(margin).mean())
    loss = torch.stack(losses).mean()
    return loss, sequence_scores(chosen_values, c_mask), sequence_scores(rejected_values, r_mask)


def _pad_to(tensor: torch.Tensor, width: int, value: float) -> torch.Tensor:
    if tensor.shape[1] == width:
        return tensor
    return torch.nn.functional.pad(tensor, (0, width - tensor.shape[1]), value=value)


# --- folders ------------------------------------------------------------------


def is_reward_model(folder: str | Path) -> bool:
    return (Path(folder) / MARKER_FILE).is_file()


def build_reward_model(base_model: str | Path, dtype: torch.dtype = torch.float32) -> RewardModel:
    """A reward model on top of a causal-LM (or reward-model) folder: its
    transformer without the LM head; the value head loaded when the folder
    is a reward model, else zero-initialised (every score starts at 0, as in
    DeepSpeed-Chat's critic warm start from a fresh head)."""
    from transformers import AutoModel

    transformer = AutoModel.from_pretrained(base_model, dtype=dtype)
    model = RewardModel(transformer)
    if is_reward_model(base_model):
        from safetensors.torch import load_file

        model.v_head.load_state_dict(load_file(str(Path(base_model) / VALUE_HEAD_FILE)))
    else:
        nn.init.zeros_(model.v_head.weight)
    return model.to(dtype)


def load_reward_model(folder: str | Path, dtype: torch.dtype = torch.float32) -> tuple[RewardModel, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, reward_model.json) of a saved reward model."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not is_reward_model(folder):
        raise ValueError(f"{folder} is not a reward model folder (no {MARKER_FILE})")
    meta = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = build_reward_model(folder, dtype)
    model.eval()
    return model, tokenizer, meta


def save_reward_model(model: RewardModel, tokenizer: Any, folder: str | Path, *, prompt_template: str, max_length: int) -> None:
    """Write the folder; the state dict is taken from `model` as it is (the
    caller gathers ZeRO-3 shards first)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    transformer_state = {k: v.detach().clone().contiguous() for k, v in model.transformer.state_dict().items()}
    model.transformer.save_pretrained(folder, state_dict=transformer_state, safe_serialization=True)
    save_file({"weight": model.v_head.weight.detach().clone().contiguous().float()}, str(folder / VALUE_HEAD_FILE))
    tokenizer.save_pretrained(folder)
    meta = {
        "kind": "reward", "value_head": VALUE_HEAD_FILE, "hidden_size": model.config.hidden_size,
        "prompt_template": prompt_template, "max_length": max_length,
        "score": "value at the EOS appended after the response (last attended token)",
        "loader": "training_jobs.reward.load_reward_model",
    }
    (folder / MARKER_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


# --- scoring ------------------------------------------------------------------


@torch.no_grad()
def score_batch(model: RewardModel, sequences: list[list[int]], pad_id: int) -> list[float]:
    """Scores of already-rendered sequences (each ends with the EOS)."""
    device = next(model.parameters()).device
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    values = model(input_ids, mask)
    return [float(v) for v in sequence_scores(values, mask).float().cpu()]


def score(
    model_dir: str | Path,
    prompts: list[str | list[dict[str, str]]],
    responses: list[str],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
) -> list[float]:
    """Scores of (prompt, response) pairs, rendered exactly as in training
    (the folder's prompt template and max_length). For PPO and the
    evaluation pages."""
    from training_jobs.pairs import prompt_ids, prompt_messages, response_ids, sequence

    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    model, tokenizer, meta = load_reward_model(model_dir)
    template = meta.get("prompt_template", DEFAULT_PROMPT_TEMPLATE)
    limit = max_length or int(meta.get("max_length", 512))
    rendered = []
    for index, (prompt, response) in enumerate(zip(prompts, responses)):
        context = prompt_ids(prompt_messages(prompt, "prompts", index + 1, "prompts"), tokenizer, template)
        seq = sequence(context, response_ids(response, tokenizer), tokenizer.eos_token_id, limit)
        if seq is None:
            raise ValueError(f"prompts[{index}]: does not fit max_length {limit}")
        rendered.append(seq[0])
    scores: list[float] = []
    for start in range(0, len(rendered), batch_size):
        scores.extend(score_batch(model, rendered[start : start + batch_size], tokenizer.pad_token_id))
    return scores
