from __future__ import annotations

from django.urls import path

from webapp.deployments import apis, views

app_name = "deployments"
urlpatterns = [
    path("", views.deployment_list, name="index"),
    path("new/", views.deployment_new, name="new"),
    path("serve-locally/<int:artifact_pk>/", views.serve_locally, name="serve-locally"),
    path("<int:pk>/", views.deployment_detail, name="detail"),
    path("<int:pk>/edit/", views.deployment_edit, name="edit"),
    path("<int:pk>/delete/", views.deployment_delete, name="delete"),
]

api_urlpatterns = [
    path("deployments/", apis.DeploymentListApi.as_view(), name="api-deployment-list"),
    path("deployments/test/", apis.DeploymentTestConnectionApi.as_view(), name="api-deployment-test"),
    path("deployments/serve-locally/", apis.ServeLocallyApi.as_view(), name="api-deployment-serve-locally"),
    path("deployments/<int:pk>/", apis.DeploymentDetailApi.as_view(), name="api-deployment-detail"),
    path("deployments/<int:pk>/check/", apis.DeploymentCheckApi.as_view(), name="api-deployment-check"),
    path("deployments/<int:pk>/try/", apis.DeploymentTryApi.as_view(), name="api-deployment-try"),
]
