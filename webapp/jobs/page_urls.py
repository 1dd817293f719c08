"""Browser pages of training jobs (the REST API is in urls.py)."""
from __future__ import annotations

from django.urls import path

from webapp.jobs import views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="index"),
    path("new/", views.job_new, name="new"),
    path("preview/", views.job_preview, name="preview"),
    path("<int:pk>/", views.job_detail, name="detail"),
]
