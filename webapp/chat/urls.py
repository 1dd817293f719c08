from __future__ import annotations

from django.urls import path

from webapp.chat import apis, views

# The pages, under /chat/ (webapp/urls.py).
app_name = "chat"
urlpatterns = [
    path("", views.chat_page, name="index"),
    path("<int:pk>/", views.chat_page, name="conversation"),
    path("arena/", views.arena_page, name="arena"),
]

# Under /api/ (webapp/urls.py).
api_urlpatterns = [
    path("chat/models/", apis.ChatModelListApi.as_view(), name="api-chat-models"),
    path("chat/conversations/", apis.ConversationListApi.as_view(), name="api-chat-conversation-list"),
    path("chat/conversations/<int:pk>/", apis.ConversationDetailApi.as_view(), name="api-chat-conversation-detail"),
    path("chat/conversations/<int:pk>/export/", apis.ConversationExportApi.as_view(), name="api-chat-conversation-export"),
    path("chat/messages/<int:pk>/feedback/", apis.FeedbackApi.as_view(), name="api-chat-feedback"),
    path("chat/arena/", apis.BattleListApi.as_view(), name="api-chat-battle-list"),
    path("chat/arena/<int:pk>/", apis.BattleDetailApi.as_view(), name="api-chat-battle-detail"),
    path("chat/arena/<int:pk>/vote/", apis.BattleVoteApi.as_view(), name="api-chat-battle-vote"),
    path("chat/preferences/export/", apis.PreferenceExportApi.as_view(), name="api-chat-preferences-export"),
]
