"""`python -m training_jobs …` — the boundary the web app drives.

Exit codes: 0 success, 1 runtime failure (an `error` event says why),
2 bad config or arguments (one line per problem on stderr, each naming the
field, and an `error` event), 143 cancelled by SIGTERM (checkpoint saved).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from training_jobs.config import ConfigError, JobConfig, json_schema, load_config, parse_config
from training_jobs.progress import Progress

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training_jobs", description=__doc__.split("\n")[0])
    # The deepspeed launcher inserts --local_rank=N before the sub-command;
    # the rank also arrives in LOCAL_RANK, which is what we use.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)

    tiny = commands.add_parser("make-tiny-model", help="build a random-weight BLOOM/LLaMA with a BPE tokenizer")
    tiny.add_argument("--arch", choices=["bloom", "llama"], default="bloom")
    tiny.add_argument("--out", required=True, type=Path)
    tiny.add_argument("--corpus", type=Path, help="text to train the tokenizer on (default: a built-in zh/en sample)")
    tiny.add_argument("--vocab-size", type=int, default=2000)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--hidden", type=int, default=64)
    tiny.add_argument("--heads", type=int, default=4)
    tiny.add_argument("--seed", type=int, default=0)

    run = commands.add_parser("run", help="run a training job from its JSON config")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")

    validate = commands.add_parser(
        "validate", help="check a job config without running it: prints ok, or `config error:` lines and exits 2"
    )
    validate.add_argument("--config", required=True, type=Path, help="the job config; - reads it from stdin")
    validate.add_argument(
        "--world-size", type=int, default=1, help="ranks the job will run on (the batch sizes must divide by it)"
    )
    validate.add_argument(
        "--pending", action="append", default=[], choices=["base_model", "reward_model"],
        help="a model path an earlier pipeline stage will produce: not checked yet (repeatable)",
    )

    commands.add_parser("schema", help="print the job config's JSON Schema")
    return parser


def _config_failure(message: str, output_dir: str | None) -> int:
    for line in message.splitlines():
        print(f"config error: {line}", file=sys.stderr)
    if os.environ.get("RANK", "0") == "0":
        Progress(output_dir).emit("error", message=message, kind="config")
    return EXIT_CONFIG


def _check_inputs(config: JobConfig) -> None:
    """Cheap checks before any heavy import: paths exist, data fits the stage."""
    from training_jobs.data import check_stage_data

    check_paths(config)
    check_stage_data(config.stage, config.train_data, "train_data")
    if config.eval_data:
        check_stage_data(config.stage, config.eval_data, "eval_data")
    if config.stage == "ppo" and config.ppo.ptx_data and config.ppo.ptx_coef > 0:
        check_stage_data("pt", config.ppo.ptx_data, "ppo.ptx_data")


def check_paths(config: JobConfig, pending: frozenset[str] = frozenset()) -> None:
    """Every model folder and data file the config names exists (no reads);
    `pending` model fields are produced later (by an earlier pipeline stage)."""
    models = {"base_model": config.base_model}
    if config.stage == "ppo" and config.reward_model:
        models["reward_model"] = config.reward_model
    if config.stage == "dpo" and config.dpo.reference_model:
        models["dpo.reference_model"] = config.dpo.reference_model
    for field_name, folder in models.items():
        if field_name in pending:
            continue
        if not (Path(folder) / "config.json").is_file():
            raise ConfigError(f"{field_name}: {folder} is not a model folder (no config.json)")
    if (
        config.stage == "ppo" and config.reward_model and "reward_model" not in pending
        and not (Path(config.reward_model) / "reward_model.json").is_file()
    ):
        raise ConfigError(f"reward_model: {config.reward_model} is not a reward model (no reward_model.json; train one with stage rm)")
    files = {"train_data": config.train_data, "eval_data": config.eval_data}
    if config.stage == "ppo" and config.ppo.ptx_coef > 0:
        if not config.ppo.ptx_data:
            raise ConfigError("ppo.ptx_data: ptx_coef > 0 needs a pre-training corpus")
        files["ppo.ptx_data"] = config.ppo.ptx_data
    for field_name, path in files.items():
        if path and not Path(path).is_file():
            raise ConfigError(f"{field_name}: file {path} does not exist")


def cmd_run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _config_failure(str(exc), None)
    try:
        _check_inputs(config)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        config.gradient_accumulation(world)
    except ConfigError as exc:
        return _config_failure(str(exc), config.output_dir)

    trainer: Any
    if config.stage == "ppo":
        from training_jobs.ppo import PpoTrainer

        trainer = PpoTrainer(config)
    else:
        from training_jobs.trainer import Trainer

        trainer = Trainer(config)
    try:
        return trainer.run(resume=args.resume).exit_code
    except ConfigError as exc:  # found while reading data or the model
        return _config_failure(str(exc), config.output_dir)
    except Exception as exc:
        if os.environ.get("RANK", "0") == "0":
            Progress(config.output_dir).emit("error", message=f"{type(exc).__name__}: {exc}", kind="runtime")
        raise


def cmd_validate(args: argparse.Namespace) -> int:
    """The checks `run` makes before loading anything heavy (fields, model
    folder, data files exist, batch sizes divide over the ranks), without
    importing torch or reading the data rows: fast enough to answer a web
    request. Prints `ok`, or one `config error: <field>: <problem>` line per
    problem on stderr and exits 2 (no `error` event: nothing ran)."""
    if args.world_size < 1:
        print("config error: world_size: must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if str(args.config) == "-":
            try:
                config = parse_config(json.loads(sys.stdin.read()))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"config: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        else:
            config = load_config(args.config)
        check_paths(config, frozenset(args.pending))
        config.gradient_accumulation(args.world_size)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"config error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    print("ok")
    return 0


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from training_jobs.tiny import TinyModelSpec, make_tiny_model

    spec = TinyModelSpec(
        arch=args.arch, vocab_size=args.vocab_size, layers=args.layers, hidden=args.hidden, heads=args.heads, seed=args.seed
    )
    try:
        spec.check()
        if args.corpus is not None and not args.corpus.is_file():
            raise ValueError(f"--corpus: file {args.corpus} does not exist")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    summary = make_tiny_model(spec, args.out, args.corpus)
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = _parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "make-tiny-model":
        return cmd_make_tiny_model(args)
    if args.command == "validate":
        return cmd_validate(args)
    print(json.dumps(json_schema(), indent=2))
    return 0
