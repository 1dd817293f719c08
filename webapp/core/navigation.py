"""The navigation bar: one entry per product section."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    url_name: str
    summary: str
    # Whether the section's pages ship in this build; a pending one shows a
    # page that says so instead of a broken link.
    available: bool


SECTIONS: tuple[Section, ...] = (
    Section("datasets", "Datasets", "datasets:index", "Upload corpora, instruction, preference and eval data; validate and mix them.", True),
    Section("models", "Models", "registry:artifact-list", "The model registry: base models and everything trained from them, with lineage.", True),
    Section("jobs", "Jobs", "jobs:index", "Launch, watch, cancel and resume training stages (PT, SFT, RM, PPO, DPO).", True),
    Section("deployments", "Deployments", "deployments:index", "Serve models through Triton, vLLM, an OpenAI-compatible server or locally.", True),
    Section("chat", "Chat", "chat:index", "Talk to a deployment, compare two in the arena, collect preferences.", True),
    Section("evaluations", "Evaluations", "evaluations:index", "GPT-4-as-judge pairwise comparisons and report pages.", True),
    Section("keys", "API keys", "accounts:key-list", "Keys for the REST API and the OpenAI-compatible /v1 endpoints.", True),
)
