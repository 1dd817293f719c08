"""What every training loop (trainer.py for pt/sft/rm/dpo, ppo.py) does
around its steps: the process group, SIGTERM, progress, checkpoint rotation,
cancellation and the job files of an output folder.

SIGTERM (how the web app cancels) only sets a flag; the loop asks every rank
with `agree` after each optimizer step, so all ranks stop at the same step,
save a checkpoint and exit with 143.
"""
from __future__ import annotations

import json
import shutil
import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_jobs.config import JobConfig
from training_jobs.distributed import destroy_distributed, init_distributed
from training_jobs.progress import Progress

EXIT_CANCELLED = 143  # 128 + SIGTERM


@dataclass
class RunResult:
    exit_code: int
    metrics: dict[str, Any]


def periodic(every: int, step: int, total_steps: int) -> bool:
    """Whether a every-`every`-steps action (eval, checkpoint; 0 = never) is
    due after `step`. Never after the last step: the final eval and the
    output follow it anyway."""
    return bool(every) and step % every == 0 and step < total_steps


def write_job_files(folder: Path, config: JobConfig, metrics: dict[str, Any]) -> None:
    """job.json (the validated config) and metrics.json of an output folder."""
    (folder / "job.json").write_text(json.dumps(config.model_dump(), indent=2))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))


class TrainingJob(ABC):
    """A job run on every rank: `run` joins the process group and calls
    `_run`, the stage's loop, which uses the helpers below."""

    rank: int
    world: int

    def __init__(self, config: JobConfig, progress: Progress | None = None) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.stop_requested = False
        self.progress = progress

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def run(self, resume: bool = False) -> RunResult:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self.rank, self.world = init_distributed()
        if self.progress is None:
            self.progress = Progress(self.output_dir, enabled=self.rank == 0)
        try:
            return self._run(resume)
        finally:
            destroy_distributed()

    @abstractmethod
    def _run(self, resume: bool) -> RunResult:
        """Train (from the latest checkpoint with `resume`), save the output."""

    @abstractmethod
    def _save_checkpoint(self, step: int) -> None:
        """Save under checkpoint_dir on every rank, then `_checkpoint_saved`."""

    def _emit(self, event: str, **fields: Any) -> None:
        assert self.progress is not None
        self.progress.emit(event, **fields)

    def _checkpoint_after(self, step: int, total_steps: int, stop: bool) -> RunResult | None:
        """After optimizer step `step`: with `stop` (agreed by all ranks)
        checkpoint and return the cancelled result; otherwise checkpoint
        every `save_every` steps and return None."""
        if stop:
            self._save_checkpoint(step)
            self._emit("cancelled", step=step, message="stopped by SIGTERM; resume with --resume")
            return RunResult(EXIT_CANCELLED, {"step": step})
        if periodic(self.config.save_every, step, total_steps):
            self._save_checkpoint(step)
        return None

    def _checkpoint_saved(self, step: int, folder: Path) -> None:
        """Rank 0: keep the newest `keep_checkpoints`, report the new one."""
        if self.rank != 0:
            return
        tags = sorted(
            (p for p in self.checkpoint_dir.glob("step-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1])
        )
        for old in tags[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        self._emit("checkpoint", step=step, path=str(folder))

    def _has_checkpoint(self) -> bool:
        """Whether `--resume` finds a complete checkpoint (`latest` names it);
        when not, a note says the run starts from step 0."""
        if (self.checkpoint_dir / "latest").exists():
            return True
        self._emit("note", message="--resume: no checkpoint yet, starting from step 0")
        return False
