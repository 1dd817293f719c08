from __future__ import annotations

from django.urls import path, re_path

from webapp.evaluations import apis

# The pages are in page_urls.py. Actions take POST with or without the
# trailing slash (a POST cannot follow APPEND_SLASH's redirect).
api_urlpatterns = [
    path("evaluations/", apis.EvaluationListCreateApi.as_view(), name="api-evaluation-list"),
    path("evaluations/templates", apis.EvaluationTemplatesApi.as_view(), name="api-evaluation-templates"),
    path("evaluations/<int:pk>/", apis.EvaluationDetailApi.as_view(), name="api-evaluation-detail"),
    re_path(r"^evaluations/(?P<pk>\d+)/cancel/?$", apis.EvaluationCancelApi.as_view(), name="api-evaluation-cancel"),
    re_path(r"^evaluations/(?P<pk>\d+)/resume/?$", apis.EvaluationResumeApi.as_view(), name="api-evaluation-resume"),
    path("evaluations/<int:pk>/report", apis.EvaluationReportApi.as_view(), name="api-evaluation-report"),
    path("evaluations/<int:pk>/questions", apis.EvaluationQuestionsApi.as_view(), name="api-evaluation-questions"),
    path("evaluations/<int:pk>/export.csv", apis.EvaluationExportCsvApi.as_view(), name="api-evaluation-export-csv"),
    path("evaluations/<int:pk>/export.json", apis.EvaluationExportJsonApi.as_view(), name="api-evaluation-export-json"),
]
