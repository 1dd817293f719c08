"""Websocket routes of every app, collected in one list."""
from __future__ import annotations

from django.urls import path

from webapp.chat.consumers import ChatConsumer
from webapp.core.routing import websocket_urlpatterns as core_ws
from webapp.jobs.consumers import JobConsumer

websocket_urlpatterns = [
    *core_ws,
    path("ws/jobs/<int:pk>/", JobConsumer.as_asgi()),
    path("ws/chat/", ChatConsumer.as_asgi()),
]
