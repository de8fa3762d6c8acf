"""The Store protocol on Google Cloud Storage, with gcsfs.

* gcsfs provides the session, the credentials, the endpoint and the JSON API calls (``_call``), retried as
  below. The store uses (a subclass of) ``gcsfs.core.GCSFileSystem``, never ``gcsfs.GCSFileSystem``: gcsfs
  2026 makes the latter an experimental class that probes every bucket's type over gRPC (60 s per call against
  an emulator); the plain JSON API needs no probe.
* The version token is the object generation. Create-if-absent (``ifGenerationMatch=0``) and compare-and-swap
  (``ifGenerationMatch=<generation>``) are the service's own preconditions, sent with a single multipart
  upload; a lost condition (HTTP 412) raises :class:`~envcore.errors.PreconditionFailed`.
* Files up to 16 MiB go up in one request; larger ones in a resumable upload of 16 MiB chunks, or, from
  32 MiB with ``GS_TRANSFER_CONCURRENCY`` > 1, as up to 32 parts uploaded ``GS_TRANSFER_CONCURRENCY`` at a
  time and composed into the object by the service (the parts are deleted afterwards). GCS publishes an
  object only when its upload or compose completes, so readers never see a partial object.
* Reads stream one ``alt=media`` response; if it breaks, the read resumes at its offset, pinned to the same
  generation. Downloads to a file use gcsfs (concurrent ranges, pinned to one generation, above 100 MB).
* The first call checks the bucket (``GET b/<bucket>``) without the long retry, so a wrong endpoint or a
  missing bucket is one clear error in a second, not after half a minute of retries.
* Every request is retried at one level only (gcsfs nests its retries: a download retries its metadata call,
  six times six attempts, ~4 minutes for a refused connection), with gcsfs's backoff: 5xx, 408, 429 and
  resets RETRIES times; an endpoint that refuses connections or does not answer UNREACHABLE_ATTEMPTS times.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import random
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from envcore import naming
from envcore.config import Config, redact_text, redact_url
from envcore.errors import ConfigError, MissingObject, PreconditionFailed, StorageError, clipped
from envcore.fetch import download_beside
from envcore.types import ObjectInfo

if TYPE_CHECKING:
    from gcsfs.core import GCSFileSystem  # type: ignore[import-untyped,unused-ignore]

T = TypeVar("T")

CHUNK = 16 * 1024 * 1024  # one request up to this size; resumable chunks and composite parts of this size
COMPOSITE_MIN = 32 * 1024 * 1024
MAX_COMPONENTS = 32  # the service's limit for one compose
PARTS = ".envcore-parts"  # where composite parts live while a file goes up (hidden from listings)
_GRANULE = 256 * 1024  # resumable chunks are multiples of this
READ_TIMEOUT = 15  # seconds without a byte from the service, per read (not per transfer)
CONNECT_TIMEOUT = 10
PROBE_ATTEMPTS = 3  # the first call: a silent endpoint fails after PROBE_ATTEMPTS * READ_TIMEOUT
RETRIES = 6  # attempts at a request answered 5xx, 408 or 429, or reset (gcsfs's count): ~35 s in all
UNREACHABLE_ATTEMPTS = 3  # at a refused or unanswered connection, or a silent answer: ~4 s when refused
DEFAULT_LOCATION = "https://storage.googleapis.com"  # gcsfs's endpoint when none is set
_NO_ENDPOINT = "no endpoint set: METAFLOW_GS_ENDPOINT_URL / STORAGE_EMULATOR_HOST"
_METHODS = {"google_default", "cache", "cloud", "anon", "browser", "token"}
_SECRET_FIELDS = ("key", "secret", "token")  # fields of a JSON key never shown


def _token(value: Any) -> Any:
    """METAFLOW_GS_TOKEN as gcsfs takes it: a method name, a JSON key given inline (a dict), a key file that
    exists, or a raw access token; a key file that does not exist is a ConfigError, not a token to check."""
    if not isinstance(value, str) or not value.strip():
        return value or None
    text = value.strip()
    if text in _METHODS:
        return text
    if text.startswith("{"):
        try:
            key = json.loads(text)
        except ValueError:
            key = None
        if not isinstance(key, dict):
            raise ConfigError(
                "METAFLOW_GS_TOKEN starts like a JSON key but is not a JSON object (it is not shown: it holds a "
                "secret). Give the service-account key file's path instead, or paste the whole key again."
            )
        return key
    path = os.path.expanduser(text)
    if os.path.exists(path):
        return path
    if "/" in text or os.sep in text or text.endswith(".json") or text.startswith(("~", ".")):
        raise ConfigError(
            f"METAFLOW_GS_TOKEN names the key file {text!r}, which does not exist. Fix the path, or set "
            "METAFLOW_GS_TOKEN to google_default (application default credentials) or another gcsfs token."
        )
    return text  # a raw OAuth access token (ya29....)


def _secrets(token: Any, endpoint: str | None) -> list[str]:
    """The values never to show: a raw token, a JSON key's secret fields, the endpoint's password."""
    found: list[str] = []
    if isinstance(token, str) and token not in _METHODS and not os.path.exists(token):
        found.append(token)
    if isinstance(token, dict):
        found += [str(v) for k, v in token.items() if any(f in str(k).lower() for f in _SECRET_FIELDS) and v]
        found += [line for v in found for line in v.splitlines() if len(line) >= 16]  # a PEM's lines
    password = urlsplit(endpoint).password if endpoint else None
    if password:
        found.append(password)
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def _endpoint(config: Config) -> str | None:
    value = str(config.get("GS_ENDPOINT_URL") or os.environ.get("STORAGE_EMULATOR_HOST") or "").strip()
    if value in ("", "default"):
        return None
    return (value if value.startswith(("http://", "https://")) else f"http://{value}").rstrip("/")


class GSStore:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint: str | None,
        token: Any = None,
        concurrency: int = 8,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.bucket, self.prefix, self.endpoint = bucket, prefix.strip("/"), endpoint
        self.token = token if token is not None else ("anon" if endpoint else "google_default")
        self.concurrency = max(1, concurrency)
        self.read_timeout = read_timeout
        self._secrets = _secrets(self.token, endpoint)
        self._fs: GCSFileSystem | None = None
        self._location = endpoint or DEFAULT_LOCATION  # where requests go: gcsfs's, once its client is made
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, root: str, config: Config) -> GSStore:
        parts = urlsplit(root)
        if parts.scheme != "gs" or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(
                f"The GCS store root {root!r} is not a gs://bucket/prefix URL; fix METAFLOW_CONDA_GSROOT "
                "(or METAFLOW_DATASTORE_SYSROOT_GS)."
            )
        naming.refuse_empty_segment(
            "GCS",
            root,
            f"gs://{parts.netloc}",
            parts.path,
            "METAFLOW_CONDA_GSROOT (or METAFLOW_DATASTORE_SYSROOT_GS, which it comes from when unset)",
            "gcloud storage rsync --recursive",
        )
        return cls(
            parts.netloc,
            parts.path,
            endpoint=_endpoint(config),
            token=_token(config.get("GS_TOKEN")),
            concurrency=int(config.get("GS_TRANSFER_CONCURRENCY") or 8),
            read_timeout=float(config.get("GS_READ_TIMEOUT") or READ_TIMEOUT),
        )

    def __repr__(self) -> str:
        return f"GSStore({self.url!r}, endpoint={self._scrub(redact_url(self.endpoint)) if self.endpoint else None!r})"

    @property
    def url(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def _where_endpoint(self) -> str:
        """The endpoint tried, as messages name it: the configured URL, or Google's own (said to be the default)."""
        if self.endpoint:
            return f"the GCS endpoint {self._scrub(redact_url(self.endpoint))}"
        return f"the Google Cloud Storage endpoint {self._location} ({_NO_ENDPOINT})"

    @property
    def _endpoint_advice(self) -> str:
        """What to check when the endpoint cannot be reached."""
        if self.endpoint:
            return "Check METAFLOW_GS_ENDPOINT_URL / STORAGE_EMULATOR_HOST and the network."
        return (
            "Check the network and any proxy in between (HTTPS_PROXY); to use another GCS service (an "
            "emulator...), set METAFLOW_GS_ENDPOINT_URL to its URL."
        )

    def _scrub(self, text: str) -> str:
        """``text`` without the token, a JSON key's secrets, a URL's password or secret query values."""
        return redact_text(text, self._secrets)

    def _name(self, key: str) -> str:
        if not key or key.startswith("/") or "//" in key:
            raise StorageError(f"{key!r} is not a valid store key: use relative '/'-separated names.")
        return f"{self.prefix}/{key}" if self.prefix else key

    # --- the client -----------------------------------------------------------------------------------

    def _client(self) -> GCSFileSystem:
        """The gcsfs client, built and checked against the bucket on first use."""
        with self._lock:
            if self._fs is None:
                try:
                    fs = _make_fs(self.endpoint, self.token, self.read_timeout)
                except Exception as exc:
                    raise self._credentials_error(exc) from None
                self._location = fs._location
                self._run(fs, self._probe, fs)
                self._fs = fs
            return self._fs

    def _run(self, fs: GCSFileSystem, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        from fsspec.asyn import sync  # type: ignore[import-untyped,unused-ignore]

        return sync(fs.loop, func, *args)  # type: ignore[no-any-return]

    def _call(self, func: Callable[..., Awaitable[T]], key: str, *args: Any, write: bool = False) -> T:
        fs = self._client()
        try:
            return self._run(fs, func, fs, *args)
        except Exception as exc:
            raise self._error(exc, key, write=write) from None

    async def _probe(self, fs: GCSFileSystem) -> None:
        """``GET b/<bucket>``, retried briefly: a wrong endpoint or a missing bucket fails fast and clearly."""
        from gcsfs.core import GCSFileSystem  # type: ignore[import-untyped,unused-ignore]

        request = getattr(GCSFileSystem._request, "__wrapped__", GCSFileSystem._request)
        for attempt in range(PROBE_ATTEMPTS):
            try:
                await request(fs, "GET", "b/{}", self.bucket, fields="name")
                return
            except FileNotFoundError:
                raise self._missing_bucket() from None
            except Exception as exc:
                error = self._error(exc, "", attempts=attempt + 1)
                if "was denied" in error.message:
                    return  # object-level permissions without storage.buckets.get: the calls will tell
                if attempt == PROBE_ATTEMPTS - 1 or not _transient(exc):
                    raise error from None
                await asyncio.sleep(0.3 * 2**attempt)

    def _missing_bucket(self) -> StorageError:
        hint = (
            " (or the endpoint is not a GCS service: check METAFLOW_GS_ENDPOINT_URL / STORAGE_EMULATOR_HOST)"
            if self.endpoint
            else ""
        )
        return StorageError(
            f"The bucket {self.bucket!r} does not exist at {self._where_endpoint}{hint}. Create it, or fix "
            "METAFLOW_CONDA_GSROOT / METAFLOW_DATASTORE_SYSROOT_GS."
        )

    def _credentials_error(self, exc: BaseException) -> StorageError:
        """gcsfs could not set up its credentials (a raw token is checked against Google when the client is
        built; a JSON key is loaded): say so, whatever the library's exception says."""
        if isinstance(exc, StorageError):
            return exc
        detail = clipped(self._scrub(" ".join(str(exc).split())), 200)
        return StorageError(
            self._scrub(
                f"The Google Cloud credentials for {self.url} could not be set up or checked "
                f"({type(exc).__name__}: {detail}). Check METAFLOW_GS_TOKEN (google_default, a service-account "
                "key file or its JSON, or a valid access token), GOOGLE_APPLICATION_CREDENTIALS, and that "
                "Google's OAuth endpoints are reachable."
            )
        )

    def _error(
        self, exc: BaseException, key: str, *, write: bool = False, attempts: int | None = None
    ) -> StorageError:
        """One paragraph for a failed call: what, where, how to fix; never credentials."""
        error = self._classify(exc, key, write=write, attempts=attempts)
        return type(error)(self._scrub(error.message))

    def _classify(
        self, exc: BaseException, key: str, *, write: bool = False, attempts: int | None = None
    ) -> StorageError:
        import aiohttp
        from gcsfs.retry import HttpError  # type: ignore[import-untyped,unused-ignore]

        where = f"{self.url}/{key}" if key else self.url
        detail = redact_text(" ".join(str(exc).split()))[:300]
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, FileExistsError):
            return PreconditionFailed(f"{where} changed or exists (the conditional write lost).")
        if isinstance(exc, FileNotFoundError):
            return self._missing_bucket() if write or not key else MissingObject(f"{where} does not exist.")
        code = getattr(exc, "code", None) if isinstance(exc, HttpError) else None
        if isinstance(exc, PermissionError) or detail.startswith("Forbidden") or code == 403:
            return StorageError(
                f"Access to {where} was denied (403). Grant the account Storage Object Admin on the bucket "
                "(storage.objects.create/get/list/delete), or use other credentials (METAFLOW_GS_TOKEN)."
            )
        if code == 401 or _is_auth_error(exc):
            return StorageError(
                f"Google Cloud credentials for {self.url} are missing or were rejected ({type(exc).__name__}). "
                "Run `gcloud auth application-default login`, set GOOGLE_APPLICATION_CREDENTIALS to a "
                "service-account key file, or set METAFLOW_GS_TOKEN."
            )
        if (isinstance(code, int) and code >= 500) or code == 429:
            return StorageError(
                f"GCS kept answering HTTP {code} for {where} after gcsfs's retries (6 attempts with backoff). The "
                "service is unavailable or throttling: retry later"
                f"{', or check METAFLOW_GS_ENDPOINT_URL' if self.endpoint else ''}."
            )
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) and not isinstance(
            exc, aiohttp.ConnectionTimeoutError
        ):
            endpoint = self._where_endpoint
            check = (
                "METAFLOW_GS_ENDPOINT_URL / STORAGE_EMULATOR_HOST (it must be a GCS JSON API service, and not "
                "overloaded), "
                if self.endpoint
                else ""
            )
            return StorageError(
                f"{endpoint[0].upper()}{endpoint[1:]} accepted the connection but did not answer for {where} "
                f"within {self.read_timeout:g} s, {attempts or UNREACHABLE_ATTEMPTS} times. Check {check}the "
                "network and any proxy in between; on a slow link raise METAFLOW_GS_READ_TIMEOUT."
            )
        if isinstance(exc, (aiohttp.ClientConnectionError, asyncio.TimeoutError, TimeoutError)):
            return StorageError(
                f"Cannot reach {self._where_endpoint} for {where} ({_unreachable(exc)}, "
                f"{attempts or _attempts(exc)} attempts). {self._endpoint_advice}"
            )
        return StorageError(f"GCS request for {where} failed: {type(exc).__name__}: {detail}.")

    # --- reading ------------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        name = self._name(key)
        try:
            meta = self._call(_get_meta, key, self.bucket, name)
        except MissingObject:
            return None
        return ObjectInfo(key=key, size=int(meta["size"]), version=str(meta["generation"]))

    def open(self, key: str) -> AbstractContextManager[IO[bytes]]:
        name = self._name(key)
        fs = self._client()
        raw = _Reader(self, fs, key, name)
        raw.start()
        return io.BufferedReader(raw, buffer_size=1 << 20)

    def get_file(self, key: str, dest: Path) -> None:
        name = self._name(key)
        fs = self._client()
        download_beside(
            dest,
            f"{self.url}/{key}",
            lambda tmp: self._run(fs, _download, fs, f"{self.bucket}/{name}", tmp, self.concurrency),
            lambda exc: self._error(exc, key),
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._name(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        skip = len(f"{self.prefix}/") if self.prefix else 0
        token: str | None = None
        while True:
            page = self._call(_list_page, prefix, self.bucket, full, token)
            for item in page.get("items", []):
                key = item["name"][skip:]
                if not key.startswith(f"{PARTS}/"):
                    yield ObjectInfo(key=key, size=int(item["size"]), version=str(item["generation"]))
            token = page.get("nextPageToken")
            if not token:
                return

    # --- writing ------------------------------------------------------------------------------------

    def put_file(self, key: str, src: Path) -> ObjectInfo:
        name = self._name(key)
        size = src.stat().st_size
        if size <= CHUNK:
            meta = self._call(_upload_bytes, key, self.bucket, name, src.read_bytes(), None, write=True)
        elif size < COMPOSITE_MIN or self.concurrency == 1:
            meta = self._call(_upload_resumable, key, self.bucket, name, str(src), 0, size, write=True)
        else:
            parts = f"{self.prefix}/{PARTS}" if self.prefix else PARTS
            meta = self._call(
                _upload_composite, key, self.bucket, name, str(src), size, parts, self.concurrency, write=True
            )
        if int(meta.get("size", -1)) != size:
            raise StorageError(
                f"{self.url}/{key} has {meta.get('size')} bytes after its upload, not {size}; upload it again."
            )
        return ObjectInfo(key=key, size=size, version=str(meta["generation"]))

    def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> ObjectInfo:
        if if_absent and if_version is not None:
            raise ValueError("if_absent and if_version are exclusive")
        match = "0" if if_absent else if_version
        meta = self._call(_upload_bytes, key, self.bucket, self._name(key), data, match, write=True)
        return ObjectInfo(key=key, size=len(data), version=str(meta["generation"]))

    def delete(self, key: str) -> None:
        try:
            self._call(_delete, key, self.bucket, self._name(key))
        except MissingObject:
            pass


# --- the JSON API calls, run on gcsfs's event loop ------------------------------------------------------


def _make_fs(endpoint: str | None, token: Any, read_timeout: float = READ_TIMEOUT) -> GCSFileSystem:
    import aiohttp

    return _file_system_class()(
        token=token,
        endpoint_url=endpoint,
        skip_instance_cache=True,
        use_listings_cache=False,
        consistency="none",
        # per read, not per transfer: aiohttp starts it once the request body is sent
        requests_timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=min(CONNECT_TIMEOUT, read_timeout), sock_read=read_timeout
        ),
    )


@functools.cache
def _file_system_class() -> type[GCSFileSystem]:
    """gcsfs's plain JSON API client (not gcsfs.GCSFileSystem: see the module docstring), its retried calls
    retried by :func:`_retried` instead."""
    from gcsfs.core import GCSFileSystem

    class FileSystem(GCSFileSystem):  # type: ignore[misc,unused-ignore]
        _request = _retried(GCSFileSystem._request.__wrapped__)
        _get_file_request = _retried(GCSFileSystem._get_file_request.__wrapped__)
        _get_file_concurrent = _retried(GCSFileSystem._get_file_concurrent.__wrapped__)

    return FileSystem


_RETRYING: ContextVar[bool] = ContextVar("envcore_gs_retrying", default=False)


def _retried(func: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """``func`` retried with gcsfs's backoff (1-2 s, then doubling), RETRIES times at most, UNREACHABLE_ATTEMPTS
    times at a refused or unanswered connection; a retried call inside another runs once (the outer retries)."""

    @functools.wraps(func)
    async def retried(*args: Any, **kwargs: Any) -> T:
        if _RETRYING.get():
            return await func(*args, **kwargs)
        outermost = _RETRYING.set(True)
        try:
            attempt = 1
            while True:
                try:
                    return await func(*args, **kwargs)
                except Exception as exc:
                    if attempt >= _attempts(exc):
                        raise
                await asyncio.sleep(min(random.random() + 2 ** (attempt - 1), 32))
                attempt += 1
        finally:
            _RETRYING.reset(outermost)

    return retried


def _unreachable(exc: BaseException) -> str:
    """Why a connection failed, in a few words."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "the name could not be resolved"
    if isinstance(getattr(exc, "os_error", None), ConnectionRefusedError):
        return "connection refused"
    return type(exc).__name__


def _attempts(exc: BaseException) -> int:
    """How many attempts a request failing with ``exc`` gets."""
    import aiohttp

    if isinstance(exc, (aiohttp.ClientConnectorError, asyncio.TimeoutError, TimeoutError)):
        return UNREACHABLE_ATTEMPTS
    return RETRIES if _transient(exc) else 1


def _transient(exc: BaseException) -> bool:
    from gcsfs.retry import is_retriable  # type: ignore[import-untyped,unused-ignore]

    return isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or is_retriable(exc)


def _is_auth_error(exc: BaseException) -> bool:
    import google.auth.exceptions

    return isinstance(exc, google.auth.exceptions.GoogleAuthError)


async def _get_meta(fs: GCSFileSystem, bucket: str, name: str) -> dict[str, Any]:
    return await fs._call("GET", "b/{}/o/{}", bucket, name, json_out=True)  # type: ignore[no-any-return]


async def _list_page(fs: GCSFileSystem, bucket: str, prefix: str, token: str | None) -> dict[str, Any]:
    return await fs._call(  # type: ignore[no-any-return]
        "GET", "b/{}/o", bucket, prefix=prefix, pageToken=token, maxResults=1000, json_out=True
    )


async def _delete(fs: GCSFileSystem, bucket: str, name: str) -> None:
    await fs._call("DELETE", "b/{}/o/{}", bucket, name)


async def _download(fs: GCSFileSystem, path: str, dest: str, concurrency: int) -> None:
    await fs._get_file(path, dest, concurrency=concurrency)


async def _upload_bytes(
    fs: GCSFileSystem, bucket: str, name: str, data: bytes, if_generation_match: str | None
) -> dict[str, Any]:
    """One multipart upload; ``if_generation_match`` is the service's precondition ("0": must not exist)."""
    boundary = f"envcore-{uuid.uuid4().hex}"
    head = json.dumps({"name": name, "contentType": "application/octet-stream"})
    body = b"".join(
        (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{head}\r\n".encode(),
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
    return await fs._call(  # type: ignore[no-any-return]
        "POST",
        f"{fs._location}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
        uploadType="multipart",
        ifGenerationMatch=if_generation_match,
        headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
        data=body,
        json_out=True,
    )


def _pread(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


async def _upload_resumable(
    fs: GCSFileSystem, bucket: str, name: str, path: str, offset: int, size: int
) -> dict[str, Any]:
    """``size`` bytes of ``path`` from ``offset`` into ``name``: one request, or a resumable upload."""
    if size <= CHUNK:
        data = await asyncio.to_thread(_pread, path, offset, size)
        return await _upload_bytes(fs, bucket, name, data, None)
    from gcsfs.core import initiate_upload, upload_chunk  # type: ignore[import-untyped,unused-ignore]

    location = await initiate_upload(fs, bucket, name, "application/octet-stream")
    done: dict[str, Any] | None = None
    try:
        for start in range(0, size, CHUNK):
            data = await asyncio.to_thread(_pread, path, offset + start, min(CHUNK, size - start))
            done = await upload_chunk(fs, location, data, start, size, "application/octet-stream")
    except BaseException:
        try:
            await fs._call("DELETE", location)
        except Exception:
            pass
        raise
    if not done:
        raise StorageError(f"The resumable upload of gs://{bucket}/{name} did not complete; upload it again.")
    return done


async def _upload_composite(
    fs: GCSFileSystem, bucket: str, name: str, path: str, size: int, parts_dir: str, concurrency: int
) -> dict[str, Any]:
    """Parts uploaded ``concurrency`` at a time, composed into ``name`` by the service, then deleted."""
    per_part = max(CHUNK, -(-size // MAX_COMPONENTS))
    per_part = -(-per_part // _GRANULE) * _GRANULE
    run = f"{parts_dir}/{uuid.uuid4().hex}"
    ranges = [
        (f"{run}/{i:02d}", start, min(per_part, size - start))
        for i, start in enumerate(range(0, size, per_part))
    ]
    limit = asyncio.Semaphore(concurrency)

    async def part(part_name: str, start: int, length: int) -> None:
        async with limit:
            await _upload_resumable(fs, bucket, part_name, path, start, length)

    try:
        await asyncio.gather(*(part(*r) for r in ranges))
        body = {
            "sourceObjects": [{"name": n} for n, _, _ in ranges],
            "destination": {"contentType": "application/octet-stream"},
        }
        return await fs._call(  # type: ignore[no-any-return]
            "POST", "b/{}/o/{}/compose", bucket, name, json=body, json_out=True
        )
    finally:
        await asyncio.gather(*(_delete(fs, bucket, n) for n, _, _ in ranges), return_exceptions=True)


# --- streaming reads ------------------------------------------------------------------------------------


class _Reader(io.RawIOBase):
    """One ``alt=media`` stream; a broken stream resumes at its offset, pinned to the first generation."""

    def __init__(self, store: GSStore, fs: GCSFileSystem, key: str, name: str) -> None:
        super().__init__()
        self.store, self.fs, self.key, self.name = store, fs, key, name
        self.pos, self.size, self.generation = 0, -1, ""
        self.resp: Any = None

    def readable(self) -> bool:
        return True

    def start(self) -> None:
        self._open()
        self.generation = str(self.resp.headers.get("x-goog-generation", ""))
        length = self.resp.headers.get("x-goog-stored-content-length") or self.resp.headers.get(
            "Content-Length"
        )
        self.size = int(length) if length is not None else -1

    def _open(self) -> None:
        """The stream from ``pos`` (retried); the store's error if it cannot be had."""
        try:
            self.resp = self.store._run(self.fs, _retried(self._get))
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> StorageError:
        error = self.store._error(exc, self.key)
        if isinstance(error, MissingObject) and self.pos:
            return StorageError(
                f"{self.store.url}/{self.key} was replaced or deleted while being read; read it again."
            )
        return error

    async def _get(self) -> Any:
        await self.fs._set_session()
        params = {"generation": self.generation} if self.generation else {}
        headers = {"Range": f"bytes={self.pos}-"} if self.pos else {}
        url = f"{self.fs._location}/download/storage/v1/b/{quote(self.store.bucket, safe='')}/o/{quote(self.name, safe='')}"
        resp = await self.fs.session.get(
            url,
            params={"alt": "media", **params},
            headers=self.fs._get_headers(headers),
            timeout=self.fs.requests_timeout,
        )
        if resp.status >= 400:
            from gcsfs.retry import validate_response  # type: ignore[import-untyped,unused-ignore]

            body = await resp.read()
            resp.release()
            validate_response(resp.status, body, self.name)
        return resp

    async def _read(self, size: int) -> bytes:
        return await self.resp.content.read(size)  # type: ignore[no-any-return]

    def readinto(self, buffer: Any) -> int:
        """The next bytes of the stream; a stream that breaks is opened again at ``pos`` (3 times at most)."""
        view = memoryview(buffer).cast("B")
        if not len(view) or (self.size >= 0 and self.pos >= self.size):
            return 0
        for attempt in range(4):
            if self.resp is None:
                self._open()
            try:
                data = self.store._run(self.fs, self._read, len(view))
                if data or self.size < 0:
                    break
                raise ConnectionResetError(f"the stream ended at byte {self.pos} of {self.size}")
            except Exception as exc:
                self._release()
                if attempt == 3 or not (_transient(exc) or isinstance(exc, ConnectionError)):
                    raise self._error(exc) from None
        view[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def _release(self) -> None:
        if self.resp is not None:
            resp, self.resp = self.resp, None

            async def release() -> None:
                resp.release()

            try:
                self.store._run(self.fs, release)
            except Exception:
                pass

    def close(self) -> None:
        self._release()
        super().close()
