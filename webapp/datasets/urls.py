from __future__ import annotations

from django.urls import path

from webapp.datasets import apis, views

app_name = "datasets"
urlpatterns = [
    path("", views.dataset_list, name="index"),
    path("upload/", views.dataset_upload, name="upload"),
    path("<int:pk>/", views.dataset_detail, name="detail"),
    path("mixtures/", views.mixture_list, name="mixtures"),
    path("mixtures/new/", views.mixture_new, name="mixture-new"),
]

api_urlpatterns = [
    path("datasets/", apis.DatasetListCreateApi.as_view(), name="api-dataset-list"),
    path("datasets/preview/", apis.DatasetPreviewApi.as_view(), name="api-dataset-preview"),
    path("datasets/<int:pk>/", apis.DatasetDetailApi.as_view(), name="api-dataset-detail"),
    path("datasets/<int:pk>/rows", apis.DatasetRowsApi.as_view(), name="api-dataset-rows"),
    path("datasets/<int:pk>/errors", apis.DatasetErrorsApi.as_view(), name="api-dataset-errors"),
    path("mixtures/", apis.MixtureListCreateApi.as_view(), name="api-mixture-list"),
    path("mixtures/preview/", apis.MixturePreviewApi.as_view(), name="api-mixture-preview"),
    path("mixtures/<int:pk>/", apis.MixtureDetailApi.as_view(), name="api-mixture-detail"),
]
