"""Websocket routes of every app, collected in one list."""
from __future__ import annotations

from webapp.core.routing import websocket_urlpatterns as core_ws

websocket_urlpatterns = [*core_ws]
