"""One DeepSpeed training loop for the stages pt, sft, rm and dpo; what
differs between them (model, data, micro-batch loss, evaluation, output) is
a `StageRecipe` (stages.py).

Data order is a pure function of (seed, epoch), and a checkpoint records the
optimizer step it was taken at, so `--resume` replays exactly the micro-batches
an uninterrupted run would have seen next. SIGTERM (how the web app cancels)
saves a checkpoint at the next step boundary and exits with 143.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import signal
from contextlib import nullcontext
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training_jobs.config import ConfigError, JobConfig
from training_jobs.data import plan_batches
from training_jobs.dsconfig import deepspeed_config
from training_jobs.progress import Progress
from training_jobs.stages import StageRecipe, load_model, recipe_for

__all__ = ["EXIT_CANCELLED", "Cancelled", "RunResult", "Trainer", "ensure_distributed_env", "load_model", "make_optimizer"]

EXIT_CANCELLED = 143  # 128 + SIGTERM
log = logging.getLogger("training_jobs")


class Cancelled(Exception):
    pass


@dataclass
class RunResult:
    exit_code: int
    metrics: dict[str, Any]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_distributed_env() -> None:
    """Without the deepspeed launcher, run as the single rank of a world of 1
    (otherwise init_distributed goes looking for MPI)."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "training_jobs" / "torch_extensions"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


def make_optimizer(model: Any, config: JobConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # No weight decay on biases and norms (the usual AdamW recipe).
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if torch.cuda.is_available():
        from deepspeed.ops.adam import FusedAdam

        return FusedAdam(groups, lr=config.learning_rate, adam_w_mode=True)
    # On CPU a client AdamW (DeepSpeed's CPUAdam would compile for a minute),
    # fused: one kernel over all parameters instead of a loop of small ones.
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)


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


class Trainer:
    def __init__(self, config: JobConfig, progress: Progress | None = None) -> None:
        self.config = config
        self.stage: StageRecipe = recipe_for(config)
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.stop_requested = False
        self.progress = progress

    # -- set-up ------------------------------------------------------------------

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def run(self, resume: bool = False) -> RunResult:
        import deepspeed
        import torch.distributed as dist

        ensure_distributed_env()
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if self.progress is None:
            self.progress = Progress(self.output_dir, enabled=self.rank == 0)
        try:
            return self._run(resume)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()

    def _run(self, resume: bool) -> RunResult:
        import deepspeed
        from transformers import get_scheduler

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
        warmup = int(config.warmup_ratio * total_steps)

        def scheduler_factory(optimizer: Any) -> Any:
            name = "constant_with_warmup" if config.lr_scheduler == "constant" else config.lr_scheduler
            return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)

        engine, _, _, scheduler = deepspeed.initialize(
            model=model,
            optimizer=make_optimizer(model, config),
            lr_scheduler=scheduler_factory,
            config=deepspeed_config(config, self.world),
        )
        if self.world == 1 and config.zero_stage == 0:
            # Nothing to average across ranks, yet the engine would still run
            # a gloo/NCCL all-reduce over every gradient at each boundary
            # (~20% of a step for a 20M model on CPU, bench/train_throughput.py).
            # ZeRO 1-3 collect their gradients through that same path: keep it.
            engine.enable_backward_allreduce = False
        self.engine = engine
        stage.prepare(engine)
        start_step = 0
        if resume:
            start_step = self._load_checkpoint()
        # Under ZeRO-3 a parameter holds only its shard; ds_numel is its full size.
        sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in engine.module.parameters()]
        params = sum(n for n, _ in sizes)
        trainable = sum(n for n, grad in sizes if grad)
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
            stop = self._agree(self.stop_requested)
            if step % config.log_every == 0 or step == total_steps or stop:
                loss_sum, micro_sum, tokens_sum, *stat_sums = self._sum(
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
            if evaluation and config.eval_every and step % config.eval_every == 0 and step < total_steps:
                last_eval = self._evaluate(evaluation, step)
            if stop:
                self._save_checkpoint(step)
                progress.emit("cancelled", step=step, message="stopped by SIGTERM; resume with --resume")
                return RunResult(EXIT_CANCELLED, {"step": step})
            if config.save_every and step % config.save_every == 0 and step < total_steps:
                self._save_checkpoint(step)
        loop_s = time.monotonic() - loop_start
        (all_tokens,) = self._sum([run_tokens])
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

    # -- collectives ----------------------------------------------------------------

    def _agree(self, flag: bool) -> bool:
        """True on every rank when any rank got SIGTERM (ranks stop together)."""
        import torch.distributed as dist

        tensor = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def _sum(self, values: list[float]) -> list[float]:
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    # -- evaluation ---------------------------------------------------------------

    @torch.no_grad()
    def _evaluate(self, data: Any, step: int) -> dict[str, Any]:
        engine = self.engine
        engine.eval()
        try:
            result = {"step": step, **self.stage.evaluate(engine, data)}
        finally:
            engine.train()
        assert self.progress is not None
        self.progress.emit("eval", **result)
        return result

    # -- checkpoints ----------------------------------------------------------------

    def _save_checkpoint(self, step: int) -> None:
        tag = f"step-{step}"
        self.engine.save_checkpoint(str(self.checkpoint_dir), tag=tag, client_state={"step": step, "rng": rng_state()})
        if self.rank == 0:
            tags = sorted(
                (p for p in self.checkpoint_dir.glob("step-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1])
            )
            for old in tags[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            assert self.progress is not None
            self.progress.emit("checkpoint", step=step, path=str(self.checkpoint_dir / tag))

    def _load_checkpoint(self) -> int:
        if not (self.checkpoint_dir / "latest").exists():
            assert self.progress is not None
            self.progress.emit("note", message="--resume: no checkpoint yet, starting from step 0")
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
        import deepspeed

        module = self.engine.module
        params = list(module.parameters())
        gather = deepspeed.zero.GatheredParameters(params) if self.config.zero_stage == 3 else nullcontext()
        with gather:
            if self.rank == 0:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                self.stage.save(module, tokenizer, self.output_dir)
                (self.output_dir / "job.json").write_text(json.dumps(self.config.model_dump(), indent=2))
                (self.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        import torch.distributed as dist

        dist.barrier()
