from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from webapp.accounts.urls import auth_urlpatterns
from webapp.chat.urls import api_urlpatterns as chat_api
from webapp.core.navigation import SECTIONS
from webapp.core.views import section_pending
from webapp.datasets.urls import api_urlpatterns as datasets_api
from webapp.deployments.urls import api_urlpatterns as deployments_api
from webapp.evaluations.urls import api_urlpatterns as evaluations_api
from webapp.jobs.urls import api_urlpatterns as jobs_api
from webapp.registry.urls import api_urlpatterns as registry_api

admin.site.site_header = "Domain LLM Workbench admin"

api_urlpatterns = [*registry_api, *datasets_api, *deployments_api, *jobs_api, *chat_api, *evaluations_api]

urlpatterns = [
    path("", include("webapp.core.urls")),
    path("", include(auth_urlpatterns)),
    path("account/", include("webapp.accounts.urls")),
    path("models/", include("webapp.registry.urls")),
    path("datasets/", include("webapp.datasets.urls")),
    path("deployments/", include("webapp.deployments.urls")),
    path("jobs/", include("webapp.jobs.page_urls")),
    path("chat/", include("webapp.chat.urls")),
    path("evaluations/", include("webapp.evaluations.page_urls")),
    path("v1/", include("webapp.api.urls")),
    path("api/", include(api_urlpatterns)),
    path("admin/", admin.site.urls),
]

# Sections whose app has not shipped yet get an honest "not in this build"
# page under their final URL; each feature replaces its entry with its urls.
for _section in SECTIONS:
    if not _section.available:
        _ns = _section.url_name.split(":")[0]
        urlpatterns.append(
            path(f"{_section.key}/", include(([path("", section_pending, {"section": _section.key}, name="index")], _ns)))
        )
