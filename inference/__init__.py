"""Django-free inference backends behind one interface (generate, stream,
embed, health): local transformers, Triton, OpenAI-compatible upstreams and
sentence-transformers embeddings. Must never import `webapp`. Filled in by the
serving issue."""
