"""One DeepSpeed training loop for the stages pt, sft, rm and dpo; what
differs between them (model, data, micro-batch loss, evaluation, output) is
a `StageRecipe` (stages.py). The process-level parts (SIGTERM, checkpoint
rotation, progress) are job.py's, shared with ppo.py.

Data order is a pure function of (seed, epoch), and a checkpoint records the
optimizer step it was taken at, so `--resume` replays exactly the micro-batches
an uninterrupted run would have seen next. SIGTERM (how the web app cancels)
saves a checkpoint at the next step boundary and exits with 143.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import torch

from training_jobs.config import ConfigError, JobConfig
from training_jobs.data import plan_batches
from training_jobs.distributed import agree, all_sum, barrier, gathered
from training_jobs.engine import make_engine, parameter_counts
from training_jobs.job import RunResult, TrainingJob, periodic, write_job_files
from training_jobs.progress import Progress
from training_jobs.rng import rng_state, seed_everything, set_rng_state
from training_jobs.stages import StageRecipe, recipe_for

__all__ = ["Trainer", "micro_batches"]


def micro_batches(
    lengths: list[int], config: JobConfig, start: int, rank: int, world: int, group: bool
) -> Iterator[tuple[float, list[int]]]:
    """(fractional epoch, example indices) for this rank, endlessly, skipping
    the first `start` global micro-batches. Global micro-batch g goes to rank
    g % world."""
    epoch = 0
    seen = 0
    while True:
        batches = plan_batches(lengths, config.micro_batch_size, config.seed, epoch, group)
        if not batches:
            raise ConfigError("train_data: no training examples")
        for index, batch in enumerate(batches):
            if seen >= start and seen % world == rank:
                yield epoch + index / len(batches), batch
            seen += 1
        epoch += 1


class Trainer(TrainingJob):
    def __init__(self, config: JobConfig, progress: Progress | None = None) -> None:
        self.stage: StageRecipe = recipe_for(config)
        super().__init__(config, progress)

    def _run(self, resume: bool) -> RunResult:
        config, progress, stage = self.config, self.progress, self.stage
        assert progress is not None
        started = time.monotonic()
        seed_everything(config.seed)
        grad_accum = config.gradient_accumulation(self.world)
        model, tokenizer = stage.load()
        train = stage.encode(tokenizer, config.train_data, "train_data")
        evaluation = stage.encode(tokenizer, config.eval_data, "eval_data") if config.eval_data else None
        lengths = stage.lengths(train)
        if not lengths:
            raise ConfigError(f"train_data: no usable examples ({'; '.join(train.notes) or 'empty file'})")
        micro_per_epoch = len(plan_batches(lengths, config.micro_batch_size, config.seed, 0, False))
        steps_per_epoch = micro_per_epoch // (grad_accum * self.world)
        if config.max_steps is None and steps_per_epoch == 0:
            raise ConfigError(
                f"global_batch_size: {config.global_batch_size} exceeds the {len(lengths)} training examples; "
                "lower it or set max_steps"
            )
        total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
        engine, scheduler = make_engine(model, config, self.world, total_steps)
        self.engine = engine
        stage.prepare(engine)
        start_step = 0
        if resume:
            start_step = self._load_checkpoint()
        params, trainable = parameter_counts(engine.module)
        progress.emit(
            "start", total_steps=total_steps, world_size=self.world, params=params, trainable_params=trainable,
            stage=config.stage, examples=len(lengths), dropped_rows=train.dropped,
            gradient_accumulation=grad_accum, resumed_from_step=start_step if resume else None,
        )
        for note in train.notes:
            progress.emit("note", message=note)

        stream = micro_batches(
            lengths, config, start_step * grad_accum * self.world, self.rank, self.world, stage.group_by_length
        )
        engine.train()
        window_loss, window_micro, window_tokens = 0.0, 0, 0
        window_stats = dict.fromkeys(stage.train_stats, 0.0)
        window_start = time.monotonic()
        last_loss: float | None = None
        last_stats: dict[str, float | None] = dict.fromkeys(stage.train_stats)
        last_eval: dict[str, Any] | None = None
        epoch = 0.0
        step = start_step
        run_tokens = 0
        loop_start = time.monotonic()
        while step < total_steps:
            for _ in range(grad_accum):
                epoch, indices = next(stream)
                result = stage.train_micro(engine, stage.collate(train, indices, engine.device))
                engine.backward(result.loss)
                engine.step()
                window_loss += float(result.loss.detach())
                window_micro += 1
                for name in stage.train_stats:
                    window_stats[name] += result.stats[name]
                window_tokens += result.tokens
                run_tokens += result.tokens
            step += 1
            stop = agree(self.stop_requested)
            if step % config.log_every == 0 or step == total_steps or stop:
                loss_sum, micro_sum, tokens_sum, *stat_sums = all_sum(
                    [window_loss, window_micro, window_tokens, *window_stats.values()]
                )
                elapsed = time.monotonic() - window_start
                last_loss = loss_sum / max(micro_sum, 1)
                # Stage statistics (rm accuracy, dpo margins…): window means over micro-batches and ranks.
                last_stats = {name: total / max(micro_sum, 1) for name, total in zip(stage.train_stats, stat_sums)}
                total_elapsed = time.monotonic() - started
                done_fraction = (step - start_step) / max(total_steps - start_step, 1)
                grad_norm = engine.get_global_grad_norm()
                progress.emit(
                    "metrics", step=step, epoch=round(epoch, 4), loss=last_loss, **last_stats, lr=scheduler.get_last_lr()[0],
                    grad_norm=float(grad_norm) if grad_norm is not None else None,
                    tokens_per_s=tokens_sum / elapsed if elapsed > 0 else None,
                    elapsed_s=round(total_elapsed, 3),
                    eta_s=round(total_elapsed / done_fraction * (1 - done_fraction), 3) if done_fraction else None,
                )
                window_loss, window_micro, window_tokens = 0.0, 0, 0
                window_stats = dict.fromkeys(stage.train_stats, 0.0)
                window_start = time.monotonic()
            if evaluation and periodic(config.eval_every, step, total_steps):
                last_eval = self._evaluate(evaluation, step)
            cancelled = self._checkpoint_after(step, total_steps, stop)
            if cancelled is not None:
                return cancelled
        loop_s = time.monotonic() - loop_start
        (all_tokens,) = all_sum([run_tokens])
        if evaluation:
            last_eval = self._evaluate(evaluation, step)
        metrics = {
            "stage": config.stage, "steps": step, "train_loss": last_loss,
            **{f"train_{name}": value for name, value in last_stats.items()},
            **stage.eval_summary(last_eval),
            "examples": len(lengths), "dropped_rows": train.dropped,
            # Throughput of the training loop alone (no loading, no eval):
            # non-pad tokens over all ranks per second.
            "train_tokens": int(all_tokens), "train_runtime_s": round(loop_s, 3),
            "train_tokens_per_s": round(all_tokens / loop_s, 1) if loop_s > 0 else None,
            "elapsed_s": round(time.monotonic() - started, 3),
        }
        self._save_output(tokenizer, metrics)
        progress.emit("done", output_dir=str(self.output_dir), metrics=metrics)
        return RunResult(0, metrics)

    # -- evaluation ---------------------------------------------------------------

    @torch.no_grad()
    def _evaluate(self, data: Any, step: int) -> dict[str, Any]:
        engine = self.engine
        engine.eval()
        try:
            result = {"step": step, **self.stage.evaluate(engine, data)}
        finally:
            engine.train()
        self._emit("eval", **result)
        return result

    # -- checkpoints ----------------------------------------------------------------

    def _save_checkpoint(self, step: int) -> None:
        tag = f"step-{step}"
        self.engine.save_checkpoint(str(self.checkpoint_dir), tag=tag, client_state={"step": step, "rng": rng_state()})
        self._checkpoint_saved(step, self.checkpoint_dir / tag)

    def _load_checkpoint(self) -> int:
        if not self._has_checkpoint():
            return 0
        path, client_state = self.engine.load_checkpoint(str(self.checkpoint_dir))
        if path is None:
            raise ConfigError(f"output_dir: cannot load the checkpoint in {self.checkpoint_dir}")
        set_rng_state(client_state["rng"])
        return int(client_state["step"])

    # -- output -----------------------------------------------------------------------

    def _save_output(self, tokenizer: Any, metrics: dict[str, Any]) -> None:
        """The stage's model folder (pt/sft/dpo: save_pretrained model +
        tokenizer, LoRA merged, adapter kept in adapter/; rm: the reward model
        folder), job.json and metrics.json."""
        module = self.engine.module
        with gathered(list(module.parameters()), self.config.zero_stage):
            if self.rank == 0:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                self.stage.save(module, tokenizer, self.output_dir)
                write_job_files(self.output_dir, self.config, metrics)
        barrier()
