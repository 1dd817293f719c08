"""Where a job's files live on a worker: one folder per job under
ARTIFACTS_ROOT, the same across attempts so a resume finds the checkpoints.

    ARTIFACTS_ROOT/jobs/<id>/
        job.json     the config handed to the CLI (rewritten by each attempt)
        hostfile     deepspeed hostfile, multi-node jobs only
        log.txt      stdout + stderr of every attempt, with a header per attempt
        output/      the CLI's output_dir: checkpoints/, progress.jsonl and, on
                     success, the final model, registered as the job's artifact
                     (checkpoints/ is deleted then: nothing resumes a success)
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings


def job_folder(job_id: int) -> Path:
    return Path(settings.ARTIFACTS_ROOT) / "jobs" / str(job_id)


def job_output_dir(job_id: int) -> Path:
    return job_folder(job_id) / "output"


def job_log_path(job_id: int) -> Path:
    return job_folder(job_id) / "log.txt"


def job_config_path(job_id: int) -> Path:
    return job_folder(job_id) / "job.json"


def job_hostfile_path(job_id: int) -> Path:
    return job_folder(job_id) / "hostfile"
