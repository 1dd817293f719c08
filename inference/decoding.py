"""Per-row logits processing, token choice and contrastive-search scoring for
the local backend's batched decoding loop.

Every row of a batch carries its own `SamplingParams`, so nothing here may let
one row's settings change another row's result: greedy rows take the argmax of
their own (penalised) logits, sampled rows draw from their own
`torch.Generator`, and the order in which a row's candidates are laid out
before the draw depends only on that row's parameters.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from inference.base import SamplingParams


@dataclass(eq=False)
class RowState:
    """What the decoder needs to know about one request."""

    params: SamplingParams
    prompt_ids: list[int]
    generator: torch.Generator | None = None
    generated: list[int] = field(default_factory=list)

    @property
    def needs_penalties(self) -> bool:
        p = self.params
        return p.repetition_penalty != 1.0 or p.presence_penalty != 0.0 or p.frequency_penalty != 0.0

    def uniform(self) -> float:
        """The next draw of this request's own random stream, in [0, 1).

        One draw per sampled token whatever the batch looks like, so a seeded
        request replays identically alone or among others."""
        return float(torch.rand((), generator=self.generator).item())


def make_generator(seed: int | None) -> torch.Generator:
    # CPU generator on purpose: the draws then do not depend on the device the
    # model runs on, and a seed means the same text on CPU and GPU (up to the
    # model's own numerics).
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def apply_penalties(logits: torch.Tensor, rows: Sequence[RowState]) -> torch.Tensor:
    """Repetition (multiplicative, over prompt and answer, as transformers'
    RepetitionPenaltyLogitsProcessor) then presence/frequency (additive, over
    the answer only, as OpenAI's). Returns a new tensor when anything applies."""
    if not any(row.needs_penalties for row in rows):
        return logits
    logits = logits.clone()
    for index, row in enumerate(rows):
        if not row.needs_penalties:
            continue
        _penalise_row(logits[index], row)
    return logits


def _penalise_row(scores: torch.Tensor, row: RowState) -> None:
    p = row.params
    device = scores.device
    if p.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(row.prompt_ids) | set(row.generated)), dtype=torch.long, device=device)
        if seen.numel():
            picked = scores[seen]
            scores[seen] = torch.where(picked < 0, picked * p.repetition_penalty, picked / p.repetition_penalty)
    if (p.presence_penalty or p.frequency_penalty) and row.generated:
        ids, counts = torch.tensor(row.generated, dtype=torch.long, device=device).unique(return_counts=True)
        scores[ids] -= p.presence_penalty + p.frequency_penalty * counts.to(scores.dtype)


def _needs_sorting(params: SamplingParams) -> bool:
    return params.top_k > 0 or params.top_p < 1.0


def choose_tokens(logits: torch.Tensor, rows: Sequence[RowState]) -> list[int]:
    """One next token per row: argmax for greedy rows, a draw otherwise."""
    logits = apply_penalties(logits, rows)
    chosen = [0] * len(rows)
    greedy = [i for i, row in enumerate(rows) if row.params.greedy]
    plain = [i for i, row in enumerate(rows) if not row.params.greedy and not _needs_sorting(row.params)]
    filtered = [i for i, row in enumerate(rows) if not row.params.greedy and _needs_sorting(row.params)]
    if greedy:
        picked = logits[greedy].argmax(dim=-1).tolist()
        for i, token in zip(greedy, picked):
            chosen[i] = token
    # Rows with and without top-k/top-p are drawn in separate groups because
    # the filtered ones are drawn over the vocabulary sorted by probability:
    # mixing them would make a row's token depend on its neighbours' settings.
    for group, sort in ((plain, False), (filtered, True)):
        if group:
            picked = _sample([rows[i] for i in group], logits[group], sort=sort)
            for i, token in zip(group, picked):
                chosen[i] = token
    return chosen


def _sample(rows: Sequence[RowState], logits: torch.Tensor, *, sort: bool) -> list[int]:
    temperature = torch.tensor([row.params.temperature for row in rows], dtype=torch.float32, device=logits.device)
    scaled = logits.float() / temperature[:, None]
    if sort:
        scaled, order = scaled.sort(dim=-1, descending=True, stable=True)
        probs = _filter_sorted(scaled, rows)
    else:
        order = None
        probs = torch.softmax(scaled, dim=-1)
    # Inverse-CDF sampling with one uniform per row from the row's own
    # generator: vectorised over the batch, reproducible per request.
    cdf = probs.cumsum(dim=-1)
    uniforms = torch.tensor([row.uniform() for row in rows], dtype=cdf.dtype, device=cdf.device)
    targets = (uniforms * cdf[:, -1])[:, None]
    index = torch.searchsorted(cdf, targets, right=True).clamp_(max=cdf.shape[-1] - 1)
    if order is not None:
        index = order.gather(-1, index)
    return index[:, 0].tolist()


def _filter_sorted(sorted_logits: torch.Tensor, rows: Sequence[RowState]) -> torch.Tensor:
    """Probabilities over descending-sorted logits with each row's top-k and
    top-p applied (top-k first, as transformers orders its warpers)."""
    vocab = sorted_logits.shape[-1]
    device = sorted_logits.device
    ks = torch.tensor([row.params.top_k if row.params.top_k > 0 else vocab for row in rows], device=device)
    ranks = torch.arange(vocab, device=device)[None, :]
    keep = ranks < ks[:, None]
    probs = torch.softmax(sorted_logits.masked_fill(~keep, float("-inf")), dim=-1)
    top_p = torch.tensor([row.params.top_p for row in rows], dtype=probs.dtype, device=device)
    # Keep a token while the mass before it is below top_p: the smallest
    # prefix reaching top_p, and always at least the most likely token.
    before = probs.cumsum(dim=-1) - probs
    keep &= before < top_p[:, None]
    keep[:, 0] = True
    probs = probs * keep
    return probs / probs.sum(dim=-1, keepdim=True)


def contrastive_choice(
    top_probs: torch.Tensor,
    candidate_hidden: torch.Tensor,
    context_hidden: torch.Tensor,
    context_mask: torch.Tensor,
    alpha: torch.Tensor,
    valid: torch.Tensor,
) -> torch.Tensor:
    """Index of the best candidate per row.

    score(v) = (1 - alpha) * p(v) - alpha * max_j cos(h_v, h_j) over the row's
    context tokens j (prompt and answer so far). Shapes: top_probs, valid
    [B, k]; candidate_hidden [B, k, H]; context_hidden [B, T, H]; context_mask
    [B, T] (False on left padding); alpha [B]. `valid` masks candidates beyond
    a row's own top-k when rows ask for different k.
    """
    candidates = F.normalize(candidate_hidden.float(), dim=-1)
    context = F.normalize(context_hidden.float(), dim=-1)
    similarity = candidates @ context.transpose(1, 2)  # [B, k, T]
    similarity = similarity.masked_fill(~context_mask[:, None, :].bool(), float("-inf"))
    degeneration = similarity.max(dim=-1).values
    alpha = alpha[:, None].float()
    # Every row has at least one context token, so `degeneration` is finite
    # and alpha 0 leaves exactly p(v): the top candidate, i.e. greedy.
    scores = (1 - alpha) * top_probs.float() - alpha * degeneration
    scores = scores.masked_fill(~valid, float("-inf"))
    return scores.argmax(dim=-1)
