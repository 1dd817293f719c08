from __future__ import annotations

from django.urls import path

from webapp.registry import apis, views

app_name = "registry"
urlpatterns = [
    path("", views.artifact_list, name="artifact-list"),
    path("import/", views.artifact_import, name="import"),
    path("<int:pk>/", views.artifact_detail, name="artifact-detail"),
]

api_urlpatterns = [
    path("models/", apis.ArtifactListApi.as_view(), name="api-model-list"),
    path("models/import/", apis.ArtifactImportApi.as_view(), name="api-model-import"),
    path("models/<int:pk>/", apis.ArtifactDetailApi.as_view(), name="api-model-detail"),
    path("models/<int:pk>/download", apis.ArtifactDownloadApi.as_view(), name="api-model-download"),
]
