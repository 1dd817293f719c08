from __future__ import annotations

from django.urls import path, re_path

from webapp.api import views

app_name = "v1"
urlpatterns = [
    path("models", views.models, name="models"),
    re_path(r"^models/(?P<model>.+)$", views.model_detail, name="model-detail"),
    path("chat/completions", views.chat_completions, name="chat-completions"),
    path("completions", views.completions, name="completions"),
    path("embeddings", views.embeddings, name="embeddings"),
    re_path(r"^(?P<rest>.*)$", views.not_found),
]
