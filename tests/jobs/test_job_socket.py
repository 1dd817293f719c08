"""/ws/jobs/<id>/: the owner gets the job's pushes; another user is refused."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client

from webapp.asgi import application
from webapp.jobs.events import notify_job
from webapp.jobs.models import Job
from webapp.registry.models import ModelArtifact

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://127.0.0.1")


@sync_to_async
def _setup() -> tuple[int, int, bytes, bytes]:
    users = get_user_model().objects
    owner, other = users.create_user("olga", password="pw-Secret-123"), users.create_user("oscar", password="pw-Secret-123")
    artifact = ModelArtifact.objects.create(owner=owner, name="tiny", version=1, kind="base", folder="models/tiny")
    job = Job.objects.create(owner=owner, stage="sft", base_artifact=artifact)
    cookies = []
    for user in (owner, other):
        client = Client()
        client.force_login(user)
        cookies.append(f"sessionid={client.cookies['sessionid'].value}".encode())
    return job.pk, owner.pk, cookies[0], cookies[1]


@sync_to_async
def _notify(job_id: int, owner_id: int, payload: dict) -> None:
    with transaction.atomic():
        notify_job(job_id=job_id, owner_id=owner_id, payload=payload)


async def test_the_owner_receives_the_jobs_pushes_and_another_user_is_refused() -> None:
    job_id, owner_id, owner_cookie, other_cookie = await _setup()
    socket = WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=[ORIGIN, (b"cookie", owner_cookie)])
    assert (await socket.connect(timeout=10))[0]
    payload = {"event": "job.progress", "id": job_id, "status": "running", "step": 3, "total_steps": 12, "events": []}
    await _notify(job_id, owner_id, payload)
    assert await socket.receive_json_from(timeout=10) == payload
    await socket.disconnect()

    other = WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=[ORIGIN, (b"cookie", other_cookie)])
    connected, code = await other.connect(timeout=10)
    assert not connected and code == 4404
    anonymous = WebsocketCommunicator(application, f"/ws/jobs/{job_id}/", headers=[ORIGIN])
    connected, code = await anonymous.connect(timeout=10)
    assert not connected and code == 4401
