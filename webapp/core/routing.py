from __future__ import annotations

from django.urls import path

from webapp.core.consumers import NotificationsConsumer

websocket_urlpatterns = [path("ws/notifications/", NotificationsConsumer.as_asgi())]
