from __future__ import annotations

from django.urls import path

from webapp.jobs import apis

# Pages (list, create form, job page, pipelines) come with the next step;
# until then the navigation's "not in this build" page keeps /jobs/.
api_urlpatterns = [
    path("jobs/", apis.JobListCreateApi.as_view(), name="api-job-list"),
    path("jobs/<int:pk>/", apis.JobDetailApi.as_view(), name="api-job-detail"),
    path("jobs/<int:pk>/cancel", apis.JobCancelApi.as_view(), name="api-job-cancel"),
    path("jobs/<int:pk>/resume", apis.JobResumeApi.as_view(), name="api-job-resume"),
    path("jobs/<int:pk>/events", apis.JobEventsApi.as_view(), name="api-job-events"),
    path("jobs/<int:pk>/log", apis.JobLogApi.as_view(), name="api-job-log"),
    path("pipelines/", apis.PipelineListCreateApi.as_view(), name="api-pipeline-list"),
    path("pipelines/<int:pk>/", apis.PipelineDetailApi.as_view(), name="api-pipeline-detail"),
    path("pipelines/<int:pk>/cancel", apis.PipelineCancelApi.as_view(), name="api-pipeline-cancel"),
]
