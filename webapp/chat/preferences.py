"""Votes and ratings → a preference dataset for the reward-model stage.

Pairs, as `{"prompt", "chosen", "rejected"}` rows:
- arena battles voted "A is better" / "B is better" (ties and "both bad"
  carry no order and are skipped, as are battles where a side failed or
  came back empty);
- 👍 and 👎 answers to the same prompt (the user message they answer, by
  its exact text, across the user's conversations — a regenerated answer
  stays rateable for this): every 👍 answer × every 👎 answer.
The prompt is the user message alone (earlier turns and the system prompt
are not part of it), which is what `prompt_chosen_rejected` rows hold.

The rows go through the datasets app's own upload path and processing, so
the export is an ordinary, versioned dataset (`chat-preferences` v1, v2, …).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field

from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import SimpleUploadedFile

from webapp.chat.models import ArenaBattle, Feedback, MessageStatus, SideStatus, Vote
from webapp.core.errors import ValidationFailed
from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_create_from_upload, dataset_process

DEFAULT_NAME = "chat-preferences"
FORMAT = "prompt_chosen_rejected"


@dataclass
class PreferencePairs:
    rows: list[dict[str, str]] = field(default_factory=list)
    from_arena: int = 0
    from_feedback: int = 0
    _seen: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, prompt: str, chosen: str, rejected: str) -> bool:
        key = (prompt, chosen, rejected)
        if not chosen.strip() or not rejected.strip() or chosen.strip() == rejected.strip() or key in self._seen:
            return False
        self._seen.add(key)
        self.rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        return True


def preference_pairs(*, owner: AbstractBaseUser) -> PreferencePairs:
    pairs = PreferencePairs()
    usable = (SideStatus.COMPLETE, SideStatus.STOPPED)
    battles = ArenaBattle.objects.filter(owner=owner, vote__in=(Vote.A, Vote.B), status_a__in=usable, status_b__in=usable)
    for battle in battles.order_by("id"):
        a, b = battle.answer_a, battle.answer_b
        chosen, rejected = (a, b) if battle.vote == Vote.A else (b, a)
        pairs.from_arena += pairs.add(battle.prompt, chosen, rejected)

    rated = (
        Feedback.objects.filter(owner=owner, message__conversation__owner=owner, message__reply_to__isnull=False)
        .exclude(message__status=MessageStatus.ERROR)
        .select_related("message__reply_to")
        .order_by("id")
    )
    by_prompt: dict[str, dict[int, list[str]]] = defaultdict(lambda: {1: [], -1: []})
    for feedback in rated:
        prompt = feedback.message.reply_to.content  # type: ignore[union-attr]
        by_prompt[prompt][feedback.rating].append(feedback.message.content)
    for prompt, answers in by_prompt.items():
        for chosen in answers[1]:
            for rejected in answers[-1]:
                pairs.from_feedback += pairs.add(prompt, chosen, rejected)
    return pairs


@dataclass(frozen=True)
class PreferenceExport:
    dataset: Dataset
    from_arena: int
    from_feedback: int


def preferences_export(*, owner: AbstractBaseUser, name: str = DEFAULT_NAME) -> PreferenceExport:
    """A new version of the `name` preference dataset from the owner's votes
    and ratings, processed here (small) so it is ready when this returns —
    unless a worker claimed the queued processing first (then it is soon)."""
    pairs = preference_pairs(owner=owner)
    if not pairs.rows:
        raise ValidationFailed(
            "nothing to export yet: vote 'A is better' or 'B is better' in the arena, or rate two answers to the "
            "same prompt 👍 and 👎 (ties and 'both bad' are skipped)"
        )
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in pairs.rows).encode()
    upload = SimpleUploadedFile(f"{DEFAULT_NAME}.jsonl", data, content_type="application/jsonl")
    dataset = dataset_create_from_upload(owner=owner, name=name, kind="preference", upload=upload, format=FORMAT)
    dataset = dataset_process(dataset_id=dataset.pk) or Dataset.objects.get(pk=dataset.pk)
    return PreferenceExport(dataset, pairs.from_arena, pairs.from_feedback)
