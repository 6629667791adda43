"""An S3 client for shard folders: boto3 configured from the standard AWS environment, retries with
exponential backoff on network errors, and errors that name the URL.

Endpoint and credentials come from where every AWS tool reads them: ``AWS_ENDPOINT_URL`` (MinIO,
Ceph, SeaweedFS, R2, GCS's S3 API; unset for AWS itself), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` (or ``~/.aws``), ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.

Retries: botocore's own are off, so that one budget bounds the whole operation: a network error
(connection refused or dropped, timeout, truncated body, 5xx) is retried with exponential backoff
until ``retry_s`` seconds (``IMAGENET_PIPE_S3_RETRY_S``, default 60) pass without progress, then
:class:`TransferError` names the URL. Downloads resume where the connection dropped (a range
request pinned to the object's ETag). Wrong credentials, a missing bucket or object fail at once.

Every object this project writes carries its sha256 in the metadata (``x-amz-meta-sha256``), so
a later run can tell with one HEAD whether an object is already what it should be.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import AccessError, BucketNotFoundError, IntegrityError, NotFoundError, StorageError, TransferError
from .url import S3Url

log = logging.getLogger("imagenet_pipe.storage")
T = TypeVar("T")

RETRY_ENV = "IMAGENET_PIPE_S3_RETRY_S"
DEFAULT_RETRY_S = 60.0
CHUNK = 1 << 20
SHA256_META = "sha256"
_ACCESS_CODES = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken",
                 "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
_RETRY_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling"}


@dataclass(frozen=True)
class ObjectInfo:
    url: S3Url
    size: int
    etag: str
    sha256: str | None = None  # as recorded by this project's uploads; None for objects written by other tools


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _boto3():
    try:
        import boto3
    except ImportError as e:
        raise StorageError("s3:// URLs need boto3: pip install 'imagenet-pipe[s3]'") from e
    return boto3


class S3Client:
    """Thread-safe; in a forked process it builds its own boto3 client (pickling drops it)."""

    def __init__(self, *, retry_s: float | None = None, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 multipart_threshold: int = 64 << 20, multipart_chunksize: int = 16 << 20,
                 upload_threads: int = 4) -> None:
        self.retry_s = float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_S)) if retry_s is None else float(retry_s)
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.multipart_threshold, self.multipart_chunksize = multipart_threshold, multipart_chunksize
        self.upload_threads = upload_threads
        self._lock = threading.Lock()
        self._per_pid: dict[int, tuple[Any, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_lock"], state["_per_pid"] = None, {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # --- boto3 plumbing ------------------------------------------------------------------------
    def _clients(self) -> tuple[Any, Any]:
        pid = os.getpid()
        with self._lock:
            if pid not in self._per_pid:
                self._per_pid = {pid: self._make_clients()}  # a forked child drops its parent's
            return self._per_pid[pid]

    def _make_clients(self) -> tuple[Any, Any]:
        boto3 = _boto3()
        from boto3.s3.transfer import TransferConfig, create_transfer_manager
        from botocore.config import Config

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        config = Config(connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                        retries={"total_max_attempts": 1}, max_pool_connections=32)
        client = boto3.session.Session(region_name=region).client("s3", config=config)
        transfer = TransferConfig(multipart_threshold=self.multipart_threshold,
                                  multipart_chunksize=self.multipart_chunksize, max_concurrency=self.upload_threads)
        return client, create_transfer_manager(client, transfer)

    @property
    def _s3(self) -> Any:
        return self._clients()[0]

    @property
    def endpoint(self) -> str:
        return self._s3.meta.endpoint_url

    # --- errors and retries ------------------------------------------------------------------
    def _fatal(self, e: Exception, url: S3Url, what: str) -> StorageError | None:
        """The error that ends ``what`` at once, or None where a retry may help; unknown errors
        (bugs) are raised as they are."""
        from botocore import exceptions as bx

        if isinstance(e, StorageError):
            return e
        if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return AccessError(f"{url}: no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(e, bx.ClientError):
            return self._client_error(e, url, what)
        if isinstance(e, (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError)):
            return None
        import urllib3.exceptions

        if isinstance(e, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
            return None
        if isinstance(e, OSError):  # the local side: disk full, permission denied, ...
            return StorageError(f"{url}: {what} failed on this machine: {e}")
        raise e

    def _client_error(self, e: Any, url: S3Url, what: str) -> StorageError | None:
        error = e.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return self._no_bucket(url)
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return NotFoundError(f"{url}: no such object")
        if code in _ACCESS_CODES or status == 403:
            return AccessError(f"{url}: access denied ({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                               "and the bucket's permissions")
        if code == "PreconditionFailed" or status == 412:
            return IntegrityError(f"{url}: the object was replaced during {what}")
        if status >= 500 or code in _RETRY_CODES:
            return None
        return StorageError(f"{url}: {what} failed: {code} {error.get('Message', '')}".rstrip())

    def _no_bucket(self, url: S3Url) -> BucketNotFoundError:
        return BucketNotFoundError(f"{url}: bucket {url.bucket!r} does not exist (endpoint {self.endpoint})")

    def _retry(self, what: str, url: S3Url, attempt: Callable[[], T],
               progressed: Callable[[], bool] = lambda: False) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or ``retry_s`` pass without progress."""
        delay, tries = 0.1, 0
        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                return attempt()
            except Exception as e:
                fatal = self._fatal(e, url, what)
                if fatal is not None:
                    raise fatal from e
                tries += 1
                if progressed():  # bytes arrived since the last failure: a fresh budget
                    deadline, delay = time.monotonic() + self.retry_s, 0.1
                if time.monotonic() + delay > deadline:
                    raise TransferError(f"{url}: {what} failed {tries} time(s) within {self.retry_s:g} s, last: "
                                        f"{type(e).__name__}: {e} (endpoint {self.endpoint})") from e
                log.warning("%s: %s failed (%s: %s); retrying in %.1f s", url, what, type(e).__name__, e, delay)
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 5.0)

    # --- operations ---------------------------------------------------------------------------
    def head(self, url: S3Url | str) -> ObjectInfo | None:
        """The object's size, ETag and recorded sha256; None when it does not exist (a missing
        bucket is an error)."""
        url = S3Url.parse(url)
        try:
            r = self._retry("head", url, lambda: self._s3.head_object(Bucket=url.bucket, Key=url.key))
        except NotFoundError:
            self.check_bucket(url)
            return None
        return ObjectInfo(url, int(r["ContentLength"]), r["ETag"], r.get("Metadata", {}).get(SHA256_META))

    def check_bucket(self, url: S3Url | str) -> None:
        """Raise :class:`NotFoundError` (or :class:`AccessError`) unless the bucket is there."""
        url = S3Url.parse(url)
        try:
            self._retry("bucket check", url, lambda: self._s3.head_bucket(Bucket=url.bucket))
        except NotFoundError:
            raise self._no_bucket(url) from None

    def make_bucket(self, bucket: str) -> None:
        url = S3Url.parse(f"s3://{bucket}")
        try:
            self._retry("bucket creation", url, lambda: self._s3.create_bucket(Bucket=bucket))
        except StorageError as e:
            if "BucketAlreadyOwnedByYou" not in str(e) and "BucketAlreadyExists" not in str(e):
                raise

    def get(self, url: S3Url | str, start: int | None = None, end: int | None = None) -> bytes:
        """The whole object, or bytes ``[start, end)``."""
        url = S3Url.parse(url)
        extra = {}
        if start is not None or end is not None:
            extra["Range"] = f"bytes={start or 0}-{'' if end is None else end - 1}"

        def attempt() -> bytes:
            return self._s3.get_object(Bucket=url.bucket, Key=url.key, **extra)["Body"].read()

        return self._retry("download", url, attempt)

    def put(self, url: S3Url | str, data: bytes) -> ObjectInfo:
        """A small object in one request, its sha256 recorded."""
        url = S3Url.parse(url)
        sha = hashlib.sha256(data).hexdigest()
        r = self._retry("upload", url, lambda: self._s3.put_object(Bucket=url.bucket, Key=url.key, Body=data,
                                                                   Metadata={SHA256_META: sha}))
        return ObjectInfo(url, len(data), r["ETag"], sha)

    def upload(self, path: Path | str, url: S3Url | str, sha256: str | None = None) -> ObjectInfo:
        """A local file, in parts above ``multipart_threshold``: the object appears only once
        complete (a killed upload leaves nothing visible). Returns what HEAD then reports."""
        url = S3Url.parse(url)
        sha256 = sha256 or sha256_file(path)
        size = os.path.getsize(path)

        def attempt() -> None:
            manager = self._clients()[1]
            manager.upload(str(path), url.bucket, url.key, {"Metadata": {SHA256_META: sha256}}).result()

        self._retry("upload", url, attempt)
        info = self.head(url)
        if info is None or info.size != size or info.sha256 != sha256:
            raise IntegrityError(f"{url}: after uploading {path} the object reads {info}, expected {size} bytes "
                                 f"with sha256 {sha256}")
        return info

    def delete(self, url: S3Url | str) -> None:
        url = S3Url.parse(url)
        self._retry("delete", url, lambda: self._s3.delete_object(Bucket=url.bucket, Key=url.key))

    def list(self, url: S3Url | str) -> Iterator[ObjectInfo]:
        """Every object below the prefix ``url`` (recursively), in key order; no sha256 (a listing
        does not carry metadata: :meth:`head` does)."""
        url = S3Url.parse(url)
        prefix = f"{url.key}/" if url.key else ""
        token: dict[str, str] = {}
        while True:
            query = {"Bucket": url.bucket, "Prefix": prefix, **token}
            page = self._retry("listing", url, lambda q=query: self._s3.list_objects_v2(**q))
            for obj in page.get("Contents", []):
                yield ObjectInfo(S3Url(url.bucket, obj["Key"]), int(obj["Size"]), obj.get("ETag", ""))
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def download(self, url: S3Url | str, dest: Path | str, *, size: int | None = None, sha256: str | None = None,
                 verify: bool = True, progress: Callable[[int], None] | None = None) -> ObjectInfo:
        """Stream an object into ``dest`` (under a temporary name, renamed once complete and
        verified). ``size``/``sha256``: what it must be (default: the sha256 its upload recorded;
        ``verify=False`` keeps whatever arrived, for a caller that reports damage itself). A
        dropped connection resumes from the last byte received. Returns the object's info with
        the sha256 of the bytes received."""
        url, dest = S3Url.parse(url), Path(dest)
        tmp = dest.with_name(f"{dest.name}.partial-{os.getpid()}-{threading.get_ident()}")
        try:
            with open(tmp, "wb") as f:
                info, got = self._stream_into(url, f, progress)
            want_sha = sha256 or info.sha256
            if verify and ((size is not None and info.size != size) or (want_sha and got != want_sha)):
                raise IntegrityError(f"{url}: {info.size} bytes with sha256 {got}, expected "
                                     f"{size if size is not None else info.size} bytes with sha256 {want_sha}")
            os.replace(tmp, dest)
            return ObjectInfo(url, info.size, info.etag, got)
        finally:
            tmp.unlink(missing_ok=True)

    def _stream_into(self, url: S3Url, f: Any, progress: Callable[[int], None] | None) -> tuple[ObjectInfo, str]:
        """Write the object into ``f`` -> (its info, sha256 of the bytes written)."""
        digest = hashlib.sha256()
        state: dict[str, Any] = {"info": None, "reported": 0}

        def attempt() -> None:
            pos, info = f.tell(), state["info"]
            if info is not None and pos >= info.size:
                return
            # after a drop: the rest of the same object (412 if it was replaced meanwhile)
            extra = {} if info is None else {"Range": f"bytes={pos}-", "IfMatch": info.etag}
            r = self._s3.get_object(Bucket=url.bucket, Key=url.key, **extra)
            if info is None:
                state["info"] = ObjectInfo(url, int(r["ContentLength"]), r["ETag"],
                                           r.get("Metadata", {}).get(SHA256_META))
            for chunk in r["Body"].iter_chunks(CHUNK):
                f.write(chunk)
                digest.update(chunk)
                if progress:
                    progress(len(chunk))

        def progressed() -> bool:
            moved = f.tell() > state["reported"]
            state["reported"] = f.tell()
            return moved

        self._retry("download", url, attempt, progressed)
        info: ObjectInfo = state["info"]
        if f.tell() != info.size:  # botocore checks Content-Length; this guards the arithmetic above
            raise IntegrityError(f"{url}: received {f.tell()} bytes of {info.size}")
        return info, digest.hexdigest()
