"""What the web app adds to a training run (issue #6's figures), side by side
in one run on the same model, data and config:

  direct: `python -m training_jobs run --config job.json` (the command the
          runner would launch, from `runner.launch_preview`), by hand;
  app:    `job_create` → Celery worker (`jobs.run`) → the same command, with
          progress events stored, pushed over the websocket and heartbeats.

Reported: time from submit to the first progress event (app) and per-step
training time from the CLI's own `metrics` timestamps (first → last) for both
— the web app's overhead is the ratio. Alternates the two sides `--rounds`
times and keeps each side's best.

    .venv/bin/python bench/job_overhead.py [--layers 4 --hidden 256 --steps 60 --log-every 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def prepare_environment(workdir: Path) -> subprocess.Popen[bytes] | None:
    from webapp.lib.embedded_redis import free_port, start_embedded_redis

    os.environ.update(
        DATABASE_URL=f"sqlite:///{workdir}/db.sqlite3", VAR_DIR=str(workdir), MEDIA_ROOT=str(workdir / "media"),
        ARTIFACTS_ROOT=str(workdir / "artifacts"), DJANGO_SETTINGS_MODULE="webapp.settings", DEBUG="0",
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT),
    )
    redis = None
    if "REDIS_URL" not in os.environ:
        port = free_port()
        redis = start_embedded_redis(port=port, workdir=workdir / "redis")
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    return redis


def make_inputs(args: argparse.Namespace, workdir: Path):
    import random

    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile

    from training_jobs.tiny import TinyModelSpec, make_tiny_model
    from webapp.datasets.services import dataset_create_from_upload, dataset_process
    from webapp.registry.services import artifact_register

    owner = get_user_model().objects.create_user("bench")
    folder = workdir / "artifacts" / "models" / "bench-base"
    make_tiny_model(TinyModelSpec(arch="bloom", layers=args.layers, hidden=args.hidden, heads=4, seed=0), folder)
    base = artifact_register(owner=owner, name="bench-base", architecture="BloomForCausalLM", kind="base", folder=folder)
    rng = random.Random(0)
    items = ["空气炸锅", "洗衣机", "冰箱", "耳机", "口红", "羽绒服", "扫地机器人", "牙刷"]
    rows = [{"instruction": f"{rng.choice(items)}多少钱?售后怎么样?", "input": "",
             "output": f"{rng.choice(items)}的价格是{rng.randint(1, 50) * 100}元,七天无理由退换。"} for _ in range(400)]
    upload = SimpleUploadedFile("sft.jsonl", ("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n").encode())
    dataset = dataset_create_from_upload(owner=owner, name="bench-sft", kind="instruction", upload=upload)
    dataset = dataset_process(dataset_id=dataset.pk)
    return owner, base, dataset


def metrics_step_time(events: list[dict]) -> tuple[float, int]:
    """Seconds per step between the first and the last metrics event."""
    metrics = [e for e in events if e.get("event") == "metrics"]
    if len(metrics) < 2:
        return float("nan"), 0
    steps = metrics[-1]["step"] - metrics[0]["step"]
    return (metrics[-1]["ts"] - metrics[0]["ts"]) / steps, steps


def run_direct(job, workdir: Path, round_no: int) -> dict[str, float]:
    from webapp.jobs import runner
    from webapp.lib.embedded_redis import free_port

    preview = runner.launch_preview(job)
    out = workdir / f"direct-{round_no}"
    config = dict(preview["config"], output_dir=str(out))
    config_path = workdir / f"direct-{round_no}.json"
    config_path.write_text(json.dumps(config))
    argv = [arg if not arg.endswith("job.json") else str(config_path) for arg in preview["argv"]]
    env = runner.launch_env(job, master_port=free_port())
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    events = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines() if line.strip()]
    first = next(e["ts"] for e in events if e["event"] == "metrics")
    step_s, steps = metrics_step_time(events)
    return {"wall_s": wall, "step_ms": 1000 * step_s, "steps": steps, "first_metrics_s": first - events[0]["ts"]}


def run_app(owner, base, dataset, config: dict, round_no: int) -> dict[str, float]:
    from webapp.jobs.models import Job, JobEvent
    from webapp.jobs.services import JobSpec, job_create

    submitted = time.time()
    job = job_create(owner=owner, spec=JobSpec(stage="sft", base_artifact=base, dataset=dataset, config=config,
                                               output_name=f"bench-{round_no}"))
    first_event = None
    while True:
        job.refresh_from_db()
        if first_event is None:
            event = JobEvent.objects.filter(job=job, kind__in=("start", "metrics")).order_by("seq").first()
            if event is not None:
                first_event = time.time()
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.02)
    finished = time.time()
    if job.status != "succeeded":
        raise RuntimeError(f"the app's job {job.pk} ended {job.status}: {job.error}")
    payloads = [e.payload for e in JobEvent.objects.filter(job=job).order_by("seq")]
    step_s, steps = metrics_step_time(payloads)
    return {"wall_s": finished - submitted, "step_ms": 1000 * step_s, "steps": steps,
            "submit_to_first_event_s": (first_event or finished) - submitted, "job": job}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=1, help="1: an event every step, the app's worst case")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="job-overhead-") as tmp:
        workdir = Path(tmp)
        redis = prepare_environment(workdir)
        from tests.support import celery_worker  # a real worker on the gpu queue, as in the tests

        try:
            owner, base, dataset = make_inputs(args, workdir)
            config = {"max_length": 128, "global_batch_size": 8, "micro_batch_size": 8, "learning_rate": 1e-3,
                      "warmup_ratio": 0.0, "precision": "fp32", "zero_stage": 0, "max_steps": args.steps,
                      "log_every": args.log_every, "save_every": 0, "seed": 1}
            direct, app = [], []
            with celery_worker(queues="gpu", log_dir=workdir / "worker"):
                for round_no in range(args.rounds):
                    result = run_app(owner, base, dataset, config, round_no)
                    app.append(result)
                    direct.append(run_direct(result["job"], workdir, round_no))
                    print(f"round {round_no}: app {result['step_ms']:.2f} ms/step, direct {direct[-1]['step_ms']:.2f} ms/step, "
                          f"submit→first event {result['submit_to_first_event_s']:.2f} s", flush=True)
        finally:
            if redis is not None:
                redis.terminate()
    best_app = min(app, key=lambda r: r["step_ms"])
    best_direct = min(direct, key=lambda r: r["step_ms"])
    print(f"\nmodel: BLOOM {args.layers} layers, hidden {args.hidden}; {args.steps} steps, an event every {args.log_every} step(s)")
    print(f"per step: app {best_app['step_ms']:.2f} ms, CLI directly {best_direct['step_ms']:.2f} ms "
          f"→ overhead {100 * (best_app['step_ms'] / best_direct['step_ms'] - 1):+.1f} %")
    print(f"submit → first progress event: {min(r['submit_to_first_event_s'] for r in app):.2f} s "
          f"(the CLI alone takes {min(r['first_metrics_s'] for r in direct):.2f} s from its start event to its first metrics)")
    print(f"wall, submit → succeeded: app {min(r['wall_s'] for r in app):.1f} s; CLI run {min(r['wall_s'] for r in direct):.1f} s")


if __name__ == "__main__":
    main()
