from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.errors import ValidationFailed
from webapp.jobs.events import event_dict
from webapp.jobs.layout import job_log_path
from webapp.jobs.models import Job, JobStage, JobStatus
from webapp.lib.ownership import visible_to

User = AbstractBaseUser | AnonymousUser
MAX_EVENTS_PAGE = 1000


def job_list(*, user: User, status: str | None = None, stage: str | None = None) -> QuerySet[Job]:
    jobs = visible_to(Job.objects.select_related("owner", "base_artifact", "output_artifact"), user)
    if status:
        if status not in JobStatus.values:
            raise ValidationFailed(f"status must be one of {', '.join(JobStatus.values)}", field="status")
        jobs = jobs.filter(status=status)
    if stage:
        if stage not in JobStage.values:
            raise ValidationFailed(f"stage must be one of {', '.join(JobStage.values)}", field="stage")
        jobs = jobs.filter(stage=stage)
    return jobs


def job_get(*, user: User, pk: int) -> Job:
    return get_object_or_404(job_list(user=user), pk=pk)


def job_events(*, job: Job, after: int = 0, limit: int = 100) -> tuple[list[dict[str, Any]], bool]:
    """Events with seq > `after`, oldest first; and whether more follow."""
    limit = max(1, min(limit, MAX_EVENTS_PAGE))
    rows = list(job.events.filter(seq__gt=after).order_by("seq")[: limit + 1])
    return [event_dict(row) for row in rows[:limit]], len(rows) > limit


def job_log_file(*, job: Job) -> Path | None:
    path = job_log_path(job.pk)
    return path if path.is_file() else None


def job_log_tail(*, job: Job, lines: int = 200, max_bytes: int = 256 * 1024) -> str:
    """The last `lines` lines of the job's log (all attempts), read from at
    most the last `max_bytes` of the file."""
    path = job_log_file(job=job)
    if path is None:
        return ""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - max_bytes))
        data = handle.read()
    text = data.decode("utf-8", "replace")
    kept = text.splitlines()
    if size > max_bytes:
        kept = kept[1:]  # the first one is cut
    return "\n".join(kept[-lines:]) + ("\n" if kept else "")
