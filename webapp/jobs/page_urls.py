"""Browser pages of training jobs and pipelines (the REST API is in urls.py)."""
from __future__ import annotations

from django.urls import path

from webapp.jobs import pipeline_views, views

app_name = "jobs"
urlpatterns = [
    path("", views.job_list, name="index"),
    path("new/", views.job_new, name="new"),
    path("preview/", views.job_preview, name="preview"),
    path("<int:pk>/", views.job_detail, name="detail"),
    path("pipelines/", pipeline_views.pipeline_list, name="pipelines"),
    path("pipelines/new/", pipeline_views.pipeline_new, name="pipeline-new"),
    path("pipelines/<int:pk>/", pipeline_views.pipeline_detail, name="pipeline-detail"),
]
