"""Browser pages of evaluations (the REST API is in urls.py)."""
from __future__ import annotations

from django.urls import path

from webapp.evaluations import views

app_name = "evaluations"
urlpatterns = [
    path("", views.evaluation_list, name="index"),
    path("new/", views.evaluation_new, name="new"),
    path("leaderboard/", views.leaderboard, name="leaderboard"),
    path("<int:pk>/", views.evaluation_detail, name="detail"),
    path("<int:pk>/results/", views.evaluation_results, name="results"),
]
