"""``imagenet-pipe sync SRC DST``: copy a shard folder between a local folder and a bucket, either
way, in parallel, with checksums verified and files already present (same size and sha256)
skipped. ``manifest.json`` goes last, so a destination holding a manifest is complete.

Checksums: uploads record each file's sha256 in the object's metadata and read it back; local
shards are checked against the local manifest before they leave. Downloads are checked against
the manifest's sha256 (shards) or the sha256 recorded at upload (other files; objects written by
other tools without one are checked for size only). Nothing is deleted at the destination.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..format import MANIFEST, WORK_DIR
from .client import ObjectInfo, S3Client, sha256_file
from .errors import IntegrityError, StorageError
from .url import S3Url, is_s3_url

DEFAULT_THREADS = 8


@dataclass
class SyncReport:
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_copied: int = 0


def sync(src: str | Path, dst: str | Path, *, threads: int = DEFAULT_THREADS, progress: bool = True,
         client: S3Client | None = None) -> SyncReport:
    """Local folder -> ``s3://bucket/prefix``, or the reverse."""
    client = client or S3Client()
    if is_s3_url(str(dst)) and not is_s3_url(str(src)):
        return upload_folder(Path(src), S3Url.parse(str(dst)), threads=threads, progress=progress, client=client)
    if is_s3_url(str(src)) and not is_s3_url(str(dst)):
        return download_folder(S3Url.parse(str(src)), Path(dst), threads=threads, progress=progress, client=client)
    raise StorageError(f"sync {src} {dst}: one side must be a local folder and the other an s3:// URL")


def manifest_last(names: list[str]) -> list[list[str]]:
    """Shards first, then the other files, then the manifest (each group finished before the next)."""
    groups = ([n for n in names if n.endswith(".tar")], [n for n in names if not n.endswith(".tar") and n != MANIFEST],
              [n for n in names if n == MANIFEST])
    return [g for g in groups if g]


def upload_folder(src: Path, url: S3Url, *, threads: int = DEFAULT_THREADS, progress: bool = True,
                  client: S3Client | None = None, shards_here: bool = True) -> SyncReport:
    """``shards_here=False``: the manifest's shards are not in ``src`` (the caller has put them in
    the bucket already); otherwise a shard missing in ``src`` is an error."""
    client = client or S3Client()
    if not src.is_dir():
        raise StorageError(f"{src}: not a folder")
    client.check_bucket(url)
    names = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file() and _is_payload(p.relative_to(src)))
    expected = _manifest_checksums(src / MANIFEST) if (src / MANIFEST).exists() else {}
    if shards_here:
        _require_shards(expected, names, str(src))
    sizes = {n: (src / n).stat().st_size for n in names}

    def one(name: str, advance: Callable[[int], None]) -> bool:
        path, target = src / name, url / name
        sha = sha256_file(path)
        if name in expected and expected[name] != sha:
            raise IntegrityError(f"{path}: sha256 {sha} differs from {src / MANIFEST}'s {expected[name]}; "
                                 "not uploaded (imagenet-pipe verify shows the damage)")
        remote = client.head(target)
        present = remote is not None and remote.size == sizes[name] and remote.sha256 == sha
        if not present:
            client.upload(path, target, sha256=sha)
        advance(sizes[name])
        return not present

    return _run(names, sizes, one, threads, progress, f"upload {src} -> {url}")


def download_folder(url: S3Url, dst: Path, *, threads: int = DEFAULT_THREADS, progress: bool = True,
                    client: S3Client | None = None) -> SyncReport:
    client = client or S3Client()
    objects = {url.relative(o.url.key): o for o in client.list(url)}
    names = sorted(n for n in objects if _is_payload(Path(n)))
    if not names:
        client.check_bucket(url)
        raise StorageError(f"{url}: no objects under this prefix")
    expected = _manifest_checksums_remote(client, url) if MANIFEST in objects else {}
    _require_shards(expected, names, str(url))
    sizes = {n: objects[n].size for n in names}

    def one(name: str, advance: Callable[[int], None]) -> bool:
        path = dst / name
        sha = expected.get(name) or _recorded_sha(client, objects[name])
        if path.is_file() and path.stat().st_size == sizes[name] and sha and sha256_file(path) == sha:
            advance(sizes[name])
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        client.download(url / name, path, size=sizes[name], sha256=sha, progress=advance)
        return True

    return _run(names, sizes, one, threads, progress, f"download {url} -> {dst}")


def _run(names: list[str], sizes: dict[str, int], one: Callable[[str, Callable[[int], None]], bool], threads: int,
         progress: bool, what: str) -> SyncReport:
    """``one(name, advance)`` copies a file (True) or finds it present (False), group by group."""
    report, lock = SyncReport(), threading.Lock()
    with tqdm(total=sum(sizes.values()), desc=what, unit="B", unit_scale=True, disable=not progress) as bar:
        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        with ThreadPoolExecutor(threads) as pool:
            for group in manifest_last(names):
                for name, copied in zip(group, pool.map(lambda n: one(n, advance), group), strict=True):
                    (report.copied if copied else report.skipped).append(name)
                    report.bytes_copied += sizes[name] if copied else 0
    return report


def _is_payload(relative: Path) -> bool:
    """Not the converter's work folder, not a temporary file."""
    return WORK_DIR not in relative.parts and ".partial" not in relative.name


def _require_shards(expected: dict[str, str], names: list[str], where: str) -> None:
    """A manifest whose shards are not all there would make an incomplete copy look finished."""
    missing = sorted(set(expected) - set(names))
    if missing:
        raise StorageError(f"{where}: {len(missing)} shard(s) listed in {MANIFEST} are missing, e.g. {missing[0]}; "
                           "nothing copied (finish the conversion, or see imagenet-pipe verify)")


def _manifest_checksums(path: Path) -> dict[str, str]:
    return _shard_checksums(json.loads(path.read_text()), str(path))


def _manifest_checksums_remote(client: S3Client, url: S3Url) -> dict[str, str]:
    return _shard_checksums(json.loads(client.get(url / MANIFEST)), str(url / MANIFEST))


def _shard_checksums(manifest: dict, where: str) -> dict[str, str]:
    try:
        return {s["name"]: s["sha256"] for s in manifest["shards"]}
    except (KeyError, TypeError) as e:
        raise StorageError(f"{where}: not an imagenet-pipe manifest (no shard list with sha256: {e})") from None


def _recorded_sha(client: S3Client, obj: ObjectInfo) -> str | None:
    info = client.head(obj.url)
    return info.sha256 if info else None
