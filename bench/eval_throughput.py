"""Evaluation throughput: N questions, two candidate deployments on local tiny
models (answers generated), a scripted judge with a fixed latency (200 ms),
at several concurrency levels; the answers phase and the judging phase timed
apart, with the speed-up of each level over concurrency 1.

    .venv/bin/python bench/eval_throughput.py [--questions 1000] [--levels 1,8,32]
        [--latency 0.2] [--max-tokens 16] [--json FILE]

The questions are the BELLE eval set (../shared/datasets/belle_eval_set.jsonl,
1,000 questions) when it is there, else synthetic ones in the same format.
The stack is thrown away afterwards: a fresh SQLite database (migrated), an
embedded Redis, MEDIA_ROOT and ARTIFACTS_ROOT in a temporary folder. Each
level is a new evaluation (created by `evaluation_create`, so sampled and
stored as in the app) run by the runner the Celery task calls
(`runner.claim` + `EvaluationRun.run`), in this process — what a worker
does minus Celery's message delivery; a subclass only adds clocks around
its phases. Both tiny models are loaded and warmed before the first level.

Judging at concurrency 1 is 2 × questions × latency (400 s for 1,000
questions at 200 ms); `--questions` makes a shorter run, and the output says
what was run.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BELLE = ROOT.parent / "shared" / "datasets" / "belle_eval_set.jsonl"


def prepare_environment(workdir: Path) -> Any:
    """Env for a throwaway stack; must run before Django is set up."""
    from webapp.lib.embedded_redis import free_port, start_embedded_redis

    port = free_port()
    redis = start_embedded_redis(port=port, workdir=workdir / "redis")
    os.environ.update(
        DATABASE_URL=f"sqlite:///{workdir}/db.sqlite3", VAR_DIR=str(workdir), MEDIA_ROOT=str(workdir / "media"),
        ARTIFACTS_ROOT=str(workdir / "artifacts"), REDIS_URL=f"redis://127.0.0.1:{port}/0", DEBUG="0",
        DJANGO_SETTINGS_MODULE="webapp.settings", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"),
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return redis


def question_rows(count: int) -> tuple[list[dict[str, Any]], str]:
    if BELLE.is_file():
        rows = [json.loads(line) for line in BELLE.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(rows) >= count:
            return rows[:count], f"BELLE eval set ({BELLE.name}), first {count}"
    rng = random.Random(0)
    classes = ["open qa"] * 89 + ["math"] * 7 + ["code"] * 4
    rows = [{"question": f"问题 {i}: 请解释第 {i} 个概念。", "class": rng.choice(classes), "std_answer": f"参考答案 {i}"}
            for i in range(count)]
    return rows, f"synthetic ({count} questions, BELLE's format and class mix)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--latency", type=float, default=0.2, help="the judge's latency per call, seconds")
    parser.add_argument("--max-tokens", type=int, default=16, help="answer length (tokens) of the candidates")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        workdir = Path(tmp)
        redis = prepare_environment(workdir)
        try:
            results = run(workdir, args, levels)
        finally:
            redis.terminate()
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def run(workdir: Path, args: argparse.Namespace, levels: list[int]) -> dict[str, Any]:
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from inference.base import GenerationRequest, SamplingParams
    from tests.evaluations.scripted_judge import Reply, scripted_judge
    from training_jobs.tiny import TinyModelSpec, make_tiny_model
    from webapp.datasets.services import dataset_create_from_upload, dataset_process
    from webapp.deployments.models import Deployment
    from webapp.deployments.serving import backend_for
    from webapp.evaluations.runner import EvaluationRun, claim
    from webapp.evaluations.services import EvaluationSpec, evaluation_create

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    rows, source = question_rows(args.questions)
    upload = SimpleUploadedFile("questions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    dataset = dataset_process(dataset_id=dataset_create_from_upload(owner=user, name="bench", kind="eval", upload=upload).pk)
    assert dataset is not None and dataset.status == "ready", dataset and dataset.error

    deployments = []
    for side, seed in (("a", 0), ("b", 1)):
        folder = workdir / "artifacts" / f"tiny-{side}"
        make_tiny_model(TinyModelSpec(arch="bloom", seed=seed), folder)
        deployments.append(Deployment.objects.create(owner=user, name=f"bench-{side}", kind="local", model_path=str(folder)))

    async def warm() -> None:  # load both models before any clock runs
        for deployment in deployments:
            request = GenerationRequest(params=SamplingParams(max_new_tokens=2, decoder="greedy"), messages=({"role": "user", "content": "你好"},))
            await backend_for(deployment).generate(request)

    async_to_sync(warm)()

    class TimedRun(EvaluationRun):
        """The runner with clocks around its phases."""

        times: dict[str, float]

        async def _answers(self) -> None:
            started = time.perf_counter()
            await super()._answers()
            self.times = {"answers_s": time.perf_counter() - started}

        async def _judging(self) -> None:
            started = time.perf_counter()
            await super()._judging()
            self.times["judging_s"] = time.perf_counter() - started

    results: dict[str, Any] = {"source": source, "questions": len(rows), "latency_s": args.latency,
                               "max_tokens": args.max_tokens, "cpus": os.cpu_count(), "levels": []}
    # "8 6" on the first line and "(8, 6)" at the end: every category parses.
    with scripted_judge(lambda prompt, call: Reply("8 6\n(8, 6)"), latency_s=args.latency) as judge:
        for level in levels:
            spec = EvaluationSpec(
                name=f"bench c={level}", dataset=dataset, a_deployment=deployments[0], b_deployment=deployments[1],
                generation_params={"max_tokens": args.max_tokens, "temperature": 0}, judge_base_url=judge.base_url,
                judge_model="scripted-judge", judge_api_key="sk-bench", concurrency=level, max_retries=2,
                request_timeout_s=60.0, mode="score", language="zh",
            )
            evaluation = evaluation_create(owner=user, spec=spec)
            calls_before = judge.calls
            started = time.perf_counter()
            claimed = claim(evaluation_id=evaluation.pk)
            assert claimed is not None
            runner = TimedRun(claimed, worker="bench")
            async_to_sync(runner.run)()
            total = time.perf_counter() - started
            evaluation.refresh_from_db()
            entry = {
                "concurrency": level, **{k: round(v, 2) for k, v in runner.times.items()}, "total_s": round(total, 2),
                "status": evaluation.status, "judge_calls": judge.calls - calls_before,
                "judgments": evaluation.judgments_done, "answers": evaluation.answers_done,
                "judgments_per_s": round(evaluation.judgments_done / runner.times["judging_s"], 1),
            }
            if evaluation.status != "succeeded":
                entry["error"] = evaluation.error
            results["levels"].append(entry)
            print(json.dumps(entry), flush=True)
    base = results["levels"][0]
    for entry in results["levels"]:
        for phase in ("answers_s", "judging_s", "total_s"):
            entry[f"speedup_{phase[:-2]}"] = round(base[phase] / entry[phase], 1) if entry[phase] else None
    return results


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\n{results['questions']} questions from the {results['source']}; judge latency {results['latency_s'] * 1000:.0f} ms; "
          f"answers ≤ {results['max_tokens']} tokens; {results['cpus']} CPUs")
    print(f"{'conc':>4} {'answers s':>10} {'judging s':>10} {'total s':>9} {'judg/s':>7} "
          f"{'×answers':>9} {'×judging':>9} {'×total':>7}  status")
    for e in results["levels"]:
        print(f"{e['concurrency']:>4} {e['answers_s']:>10.2f} {e['judging_s']:>10.2f} {e['total_s']:>9.2f} "
              f"{e['judgments_per_s']:>7.1f} {e['speedup_answers']:>9} {e['speedup_judging']:>9} {e['speedup_total']:>7}  "
              f"{e['status']} ({e['judge_calls']} judge calls)")


if __name__ == "__main__":
    main()
