"""Moving models in and out of the registry: safe tarball extraction, the
offline transformers check every imported folder passes, and the streamed
`.tar.gz` download. Storage and database writes are in services.py.

Extraction never trusts the archive. Every member is checked before one byte
is written: its path (no absolute paths, no `..`), its type (regular files
and folders only: no symbolic or hard links, devices or FIFOs), duplicates,
and the running total of unpacked sizes against REGISTRY_MAX_IMPORT_MB. Only
then are the members written, by this code (not `extractall`) and with fresh
permissions, into a staging folder the caller deletes on any failure.

The download is a gzip stream built piece by piece: a tar header, the file
in 1 MiB reads, padding, each compressed as it goes. Memory stays at a few
MiB whatever the model's size, and under ASGI each piece is made in a worker
thread (`achunks`), so the event loop never blocks on disk or zlib.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from webapp.core.errors import ValidationFailed

log = logging.getLogger(__name__)

MAX_MEMBERS = 100_000  # a model folder has tens of files; this bounds the member list's memory
CHUNK = 1024 * 1024
BLOCK = tarfile.BLOCKSIZE  # 512
RECORD = tarfile.RECORDSIZE  # 10240: tar pads the archive to whole records
STAGING_PREFIX = ".import-"
GZIP_LEVEL = 1  # float weights barely compress; level 1 keeps the download disk-bound, not CPU-bound
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = "model names use letters, digits, '.', '_' and '-' and start with a letter or digit (at most 100)"


@dataclass(frozen=True)
class ModelInfo:
    architecture: str
    num_parameters: int | None


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MiB"


def quoted(name: str) -> str:
    """A member name for a message: quoted, escaped, bounded."""
    return repr(name if len(name) <= 200 else name[:200] + "…")


# --- names --------------------------------------------------------------------

def check_model_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("give the model a name", field="name")
    if not NAME_RE.fullmatch(name):
        raise ValidationFailed(f"{NAME_RULE}; got {quoted(name)}", field="name")
    return name


def name_from(filename: str) -> str:
    """A default model name from an upload's or folder's name:
    `/x/bloom-560m.tar.gz` → `bloom-560m`."""
    base = filename.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"\.(tar\.gz|tgz|tar)$", "", base, flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("._-")[:100]


def safe_component(text: str, fallback: str) -> str:
    """`text` as one path component (folder or download name), never `..`."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("._-")[:100]
    return cleaned or fallback


# --- archives -------------------------------------------------------------------

def _member_parts(member: tarfile.TarInfo) -> list[str]:
    raw = member.name
    if not raw or not raw.strip("/."):
        if member.isdir():
            return []  # the archive's own "./" entry
        raise ValidationFailed(f"archive member {quoted(raw)} has no file name", field="file")
    if raw.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[\\/]", raw):
        raise ValidationFailed(f"archive member {quoted(raw)} has an absolute path", field="file")
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValidationFailed(f"archive member {quoted(raw)} escapes the folder", field="file")
    return parts


def _check_type(member: tarfile.TarInfo) -> None:
    name = quoted(member.name)
    if member.issym():
        raise ValidationFailed(
            f"archive member {name} is a symbolic link (to {quoted(member.linkname)}): links are not allowed", field="file"
        )
    if member.islnk():
        raise ValidationFailed(
            f"archive member {name} is a hard link (to {quoted(member.linkname)}): links are not allowed", field="file"
        )
    if member.ischr() or member.isblk() or member.isfifo():
        raise ValidationFailed(f"archive member {name} is a device file or FIFO: only files and folders are allowed", field="file")
    if not (member.isreg() or member.isdir()):
        raise ValidationFailed(f"archive member {name} is not a regular file or folder", field="file")


def plan_members(members: Iterator[tarfile.TarInfo], *, limit: int) -> tuple[list[tuple[tarfile.TarInfo, list[str]]], int]:
    """Check every member; returns (member, relative path parts) to write,
    unwrapped from a single top-level folder, and the unpacked size."""
    entries: list[tuple[tarfile.TarInfo, list[str]]] = []
    total = 0
    for count, member in enumerate(members, start=1):
        if count > MAX_MEMBERS:
            raise ValidationFailed(f"the archive has more than {MAX_MEMBERS:,} members: not a model folder", field="file")
        parts = _member_parts(member)
        _check_type(member)
        if member.isreg():
            if member.size < 0:
                raise ValidationFailed(f"archive member {quoted(member.name)} has a negative size", field="file")
            total += member.size
            if total > limit:
                raise ValidationFailed(
                    f"archive member {quoted(member.name)} takes the unpacked size past the import limit of "
                    f"{mib(limit)} (REGISTRY_MAX_IMPORT_MB)",
                    field="file",
                )
        if parts:
            entries.append((member, parts))
    files = {tuple(parts) for member, parts in entries if member.isreg()}
    if not files:
        raise ValidationFailed("the archive holds no files", field="file")
    seen: set[tuple[str, ...]] = set()
    for member, parts in entries:
        key = tuple(parts)
        if key in seen and (member.isreg() or key in files):
            raise ValidationFailed(f"archive member {quoted(member.name)} appears twice", field="file")
        seen.add(key)
        for depth in range(1, len(parts)):
            if tuple(parts[:depth]) in files:
                raise ValidationFailed(
                    f"archive member {quoted(member.name)} is inside {quoted('/'.join(parts[:depth]))}, which is a file",
                    field="file",
                )
    # Content in one top-level folder (`tar czf m.tgz bloom/`) is unwrapped.
    tops = {parts[0] for _, parts in entries}
    if len(tops) == 1 and all(len(parts) > 1 or member.isdir() for member, parts in entries):
        entries = [(member, parts[1:]) for member, parts in entries if len(parts) > 1]
    return entries, total


def open_archive(handle: IO[bytes], label: str) -> tarfile.TarFile:
    """A gzip-compressed or plain tar, by its first bytes (not its name)."""
    handle.seek(0)
    magic = handle.read(2)
    handle.seek(0)
    mode = "r:gz" if magic == b"\x1f\x8b" else "r:"
    try:
        return tarfile.open(fileobj=handle, mode=mode)  # type: ignore[call-overload]
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        kind = "a gzip file but not a tar archive" if mode == "r:gz" else "not a .tar.gz, .tgz or .tar archive"
        raise ValidationFailed(f"{label} is {kind} ({exc})", field="file") from None


def extract_archive(handle: IO[bytes], dest: Path, *, limit: int, label: str = "the upload") -> int:
    """Check the whole archive, then write it into the (empty) folder `dest`.
    Returns the bytes written. Raises ValidationFailed naming the member; the
    caller removes `dest` on failure."""
    with open_archive(handle, label) as tar:
        try:
            entries, total = plan_members(iter(tar), limit=limit)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise ValidationFailed(f"{label} is a damaged archive: {exc}", field="file") from None
        free = shutil.disk_usage(dest).free
        if total > free:
            raise ValidationFailed(
                f"not enough disk space: the archive unpacks to {mib(total)}, {mib(free)} are free", field="file"
            )
        dest_real = dest.resolve()
        written = 0
        for member, parts in entries:
            target = dest.joinpath(*parts)
            # Belt and braces: parts hold no `..` and dest holds no links.
            if not target.resolve().is_relative_to(dest_real):
                raise ValidationFailed(f"archive member {quoted(member.name)} escapes the folder", field="file")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has a reader
                with source, target.open("xb") as out:
                    remaining = member.size
                    while remaining:
                        data = source.read(min(CHUNK, remaining))
                        if not data:
                            raise ValidationFailed(f"archive member {quoted(member.name)} is cut short", field="file")
                        out.write(data)
                        remaining -= len(data)
                        written += len(data)
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise ValidationFailed(f"{label} is a damaged archive at member {quoted(member.name)}: {exc}", field="file") from None
    return written


# --- server folders -------------------------------------------------------------

def folder_size(folder: Path) -> int:
    """Bytes a copy of `folder` takes (links followed, as the copy does)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(folder, followlinks=True):
        for filename in filenames:
            try:
                total += os.stat(os.path.join(dirpath, filename)).st_size
            except OSError:
                pass  # a broken link: the copy reports it
    return total


def check_links_inside(folder: Path, root: Path, label: str) -> None:
    """A folder registered in place may hold links (a hub-cache snapshot),
    but only to files under ARTIFACTS_ROOT: downloads serve nothing else."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for entry in (*dirnames, *filenames):
            path = Path(dirpath) / entry
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise ValidationFailed(
                    f"{quoted(str(path.relative_to(folder)))} in {label} links to {path.resolve()}, outside ARTIFACTS_ROOT: "
                    "register a copy of the model (a folder outside ARTIFACTS_ROOT is copied in)",
                    field="folder",
                )


# --- the transformers check -------------------------------------------------------

def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else type(exc).__name__
    return message if len(message) <= 300 else message[:300] + "…"


def _weight_files(folder: Path, where: str) -> tuple[str, list[Path]]:
    """("safetensors" | "bin", files): a shard index wins; otherwise the
    model*.safetensors files (not stray copies like consolidated.safetensors)."""
    for fmt, index_name, patterns in (
        ("safetensors", "model.safetensors.index.json", ("model*.safetensors", "*.safetensors")),
        ("bin", "pytorch_model.bin.index.json", ("pytorch_model*.bin",)),
    ):
        index = folder / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ValidationFailed(f"weights index '{index_name}' in {where} is not valid: {first_line(exc)}", field="file") from None
            files = []
            for shard in shards:
                path = folder / str(shard)
                if not path.resolve().is_relative_to(folder.resolve()) or not path.is_file():
                    raise ValidationFailed(f"weights index '{index_name}' names {quoted(str(shard))}, which is missing from {where}", field="file")
                files.append(path)
            return fmt, files
        for pattern in patterns:
            files = sorted(p for p in folder.glob(pattern) if p.is_file())
            if files:
                return fmt, files
    raise ValidationFailed(f"no weights in {where}: expected *.safetensors or pytorch_model*.bin files", field="file")


def _count_safetensors(files: list[Path], where: str) -> int:
    from safetensors import safe_open

    total = 0
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:  # reads the header only
                total += sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
        except Exception as exc:  # safetensors raises its own error types
            raise ValidationFailed(f"weights file {quoted(path.name)} in {where} is not a valid safetensors file: {first_line(exc)}", field="file") from None
    return total


def _count_bin(files: list[Path], where: str, config: object, architecture: str) -> int | None:
    """Memory-mapped (weights_only: no pickled code runs) so nothing is read
    into memory; tensors sharing storage (tied embeddings) count once. A
    legacy non-zip checkpoint cannot be mapped: count a meta-device model."""
    import torch

    total = 0
    seen: set[tuple[int, int, tuple[int, ...], tuple[int, ...]]] = set()
    for path in files:
        if not zipfile.is_zipfile(path):
            return _count_on_meta(config, architecture)
        try:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except Exception as exc:
            raise ValidationFailed(f"weights file {quoted(path.name)} in {where} does not load: {first_line(exc)}", field="file") from None
        if not isinstance(state, dict):
            raise ValidationFailed(f"weights file {quoted(path.name)} in {where} is not a state dict", field="file")
        for tensor in state.values():
            if isinstance(tensor, torch.Tensor):
                key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))
                if key not in seen:
                    seen.add(key)
                    total += tensor.numel()
        del state
    return total


def _count_on_meta(config: object, architecture: str) -> int | None:
    import torch
    import transformers

    model_class = getattr(transformers, architecture, None)
    if model_class is None:
        return None
    try:
        with torch.device("meta"):
            model = model_class(config)
        return sum(p.numel() for p in model.parameters())
    except Exception:
        log.warning("could not count the parameters of a %s on the meta device", architecture, exc_info=True)
        return None


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def inspect_artifact(folder: Path, *, where: str, kind: str) -> ModelInfo:
    """inspect_adapter for kind `adapter`, inspect_model for the others."""
    if kind == "adapter":
        return inspect_adapter(folder, where=where)
    return inspect_model(folder, where=where)


def inspect_adapter(folder: Path, *, where: str) -> ModelInfo:
    """A PEFT adapter folder (what peft's save_pretrained writes, and the
    `adapter/` folder of a LoRA training run): adapter_config.json naming a
    peft_type, and adapter weights, counted from their headers."""
    config_path = folder / ADAPTER_CONFIG
    if not config_path.is_file():
        hint = " (it holds config.json: import it with kind base, policy or reward)" if (folder / "config.json").is_file() else ""
        raise ValidationFailed(f"no {ADAPTER_CONFIG} in {where}: not a PEFT adapter{hint}", field="file")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailed(f"{ADAPTER_CONFIG} in {where} is not valid JSON: {first_line(exc)}", field="file") from None
    peft_type = config.get("peft_type") if isinstance(config, dict) else None
    if not isinstance(peft_type, str) or not peft_type:
        raise ValidationFailed(f"{ADAPTER_CONFIG} in {where} names no peft_type", field="file")
    weights = [folder / name for name in ADAPTER_WEIGHTS if (folder / name).is_file()]
    if not weights:
        raise ValidationFailed(f"no adapter weights in {where}: expected {' or '.join(ADAPTER_WEIGHTS)}", field="file")
    if weights[0].suffix == ".safetensors":
        count: int | None = _count_safetensors(weights[:1], where)
    else:
        count = _count_bin(weights[:1], where, None, "")
    rank = config.get("r")
    label = f"{peft_type} adapter" + (f" (r={rank})" if isinstance(rank, int) else "")
    return ModelInfo(architecture=label[:100], num_parameters=count)


def architecture_name(architectures: object, model_type: object) -> str:
    """The model class a config names (its first `architectures` entry),
    else its model_type, else "unknown"."""
    if isinstance(architectures, (list, tuple)) and architectures:
        return str(architectures[0])
    return str(model_type or "unknown")


def saved_architecture(folder: Path) -> str | None:
    """architecture_name of a saved model folder's config.json; None when
    there is no readable one (a run that left no model)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    return architecture_name(config.get("architectures"), config.get("model_type"))


def inspect_model(folder: Path, *, where: str) -> ModelInfo:
    """The folder must load offline with transformers (config and tokenizer;
    no remote code) and hold weights. `where` names it in messages ("the
    archive", "folder /x"). Weights are counted, not loaded."""
    if not (folder / "config.json").is_file():
        hint = " (it holds a PEFT adapter: import it with kind adapter)" if (folder / ADAPTER_CONFIG).is_file() else ""
        raise ValidationFailed(f"no config.json in {where}: not a transformers model{hint}", field="file")
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise ValidationFailed(f"config.json in {where} does not load with transformers: {first_line(exc)}", field="file") from None
    architecture = architecture_name(getattr(config, "architectures", None), getattr(config, "model_type", None))
    fmt, files = _weight_files(folder, where)
    try:
        AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise ValidationFailed(f"the tokenizer in {where} does not load with transformers: {first_line(exc)}", field="file") from None
    if fmt == "safetensors":
        count: int | None = _count_safetensors(files, where)
    else:
        count = _count_bin(files, where, config, architecture)
    return ModelInfo(architecture=architecture[:100], num_parameters=count)


# --- download -----------------------------------------------------------------------

def _entries(directory: Path, arcname: str, allowed: Path, seen: frozenset[Path]) -> Iterator[tuple[Path, str, bool]]:
    """(path to read, name in the archive, is a folder), sorted. Links are
    followed only to targets under `allowed` (ARTIFACTS_ROOT); others, and
    anything that is neither file nor folder, are left out."""
    real = directory.resolve()
    if real in seen:
        return  # a link loop
    seen = seen | {real}
    for child in sorted(directory.iterdir(), key=lambda p: p.name):
        name = f"{arcname}/{child.name}"
        target = child.resolve() if child.is_symlink() else child
        if child.is_symlink() and not target.is_relative_to(allowed):
            log.warning("download of %s leaves out %s: it links outside ARTIFACTS_ROOT", directory, child)
            continue
        if target.is_dir():
            yield target, name, True
            yield from _entries(target, name, allowed, seen)
        elif target.is_file():
            yield target, name, False


def targz_chunks(folder: Path, arcroot: str, *, allowed: Path) -> Iterator[bytes]:
    """`folder` as a .tar.gz whose members sit under `arcroot/`, yielded in
    pieces as it is made: tar headers from TarInfo.tobuf, file data read 1
    MiB at a time, each piece through one zlib gzip stream."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    written = 0

    def emit(data: bytes) -> bytes:
        nonlocal written
        written += len(data)
        return compressor.compress(data)

    def header(name: str, is_dir: bool, size: int, mtime: float) -> bytes:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
        info.mode = 0o755 if is_dir else 0o644
        info.size = 0 if is_dir else size
        info.mtime = int(mtime)
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    entries = [(folder, arcroot, True)]
    entries.extend(_entries(folder, arcroot, allowed, frozenset()))
    for path, name, is_dir in entries:
        stat = path.stat()
        out = emit(header(name, is_dir, stat.st_size, stat.st_mtime))
        if out:
            yield out
        if is_dir:
            continue
        with path.open("rb") as handle:
            remaining = stat.st_size
            while remaining:
                data = handle.read(min(CHUNK, remaining))
                if not data:
                    raise OSError(f"{path} shrank while it was being sent")
                remaining -= len(data)
                out = emit(data)
                if out:
                    yield out
        padding = -stat.st_size % BLOCK
        if padding:
            out = emit(b"\0" * padding)
            if out:
                yield out
    end = 2 * BLOCK  # end of archive: two zero blocks, then pad to a whole record
    end += -(written + end) % RECORD
    yield emit(b"\0" * end) + compressor.flush()


async def achunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The same pieces for an ASGI server: each is made in a worker thread.
    (Django reads a *sync* iterator into one list under ASGI: a whole model
    in memory.)"""
    done = object()
    try:
        while True:
            piece = await asyncio.to_thread(next, chunks, done)
            if piece is done:
                return
            yield piece  # type: ignore[misc]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            try:
                close()  # closes the open file when the client goes away
            except ValueError:
                pass  # still running in its thread (cancelled mid-piece): garbage collection closes it
