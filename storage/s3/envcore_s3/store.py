"""The Store protocol on S3, with boto3.

* Create-if-absent and compare-and-swap are the service's own conditional writes (``If-None-Match: *`` and
  ``If-Match: <etag>``); the version token is the ETag. fsspec's s3fs offers create-if-absent but not
  ``If-Match``, so one client (botocore) does everything, consistently.
* Large files go up in parts with bounded parallelism (``S3_TRANSFER_CONCURRENCY``); an upload that fails is
  aborted by the transfer manager, and S3 publishes a multi-part object only when it completes, so readers
  never see a partial object.
* Transient errors (5xx, throttling, resets) are retried by botocore's standard retry mode with backoff.
* Credentials come from the standard places (environment, profile, instance role); nothing secret is kept in
  the store's ``repr``, URL or messages.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped,unused-ignore]
import botocore.exceptions  # type: ignore[import-untyped,unused-ignore]
from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped,unused-ignore]
from botocore.config import Config as BotoConfig  # type: ignore[import-untyped,unused-ignore]

from envcore import naming
from envcore.config import Config, redact_text, redact_url
from envcore.errors import ConfigError, MissingObject, PreconditionFailed, StorageError
from envcore.fetch import download_beside
from envcore.types import ObjectInfo

MULTIPART = 16 * 1024 * 1024
_PRECONDITION = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}
_MISSING = {"NoSuchKey", "404", "NotFound"}
READ_TIMEOUT = 15  # seconds without a byte from the service, per read (not per transfer)
CONNECT_TIMEOUT = 10
SILENT_ATTEMPTS = 3  # attempts of a request the service does not answer (other errors: 6, botocore's policy)


def _give_up_on_silence(attempts: int, caught_exception: Exception | None = None, **_: Any) -> bool | None:
    """botocore ``needs-retry`` hook: stop after SILENT_ATTEMPTS timeouts in a row instead of six."""
    timeouts = (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError)
    if isinstance(caught_exception, timeouts) and attempts >= SILENT_ATTEMPTS:
        return False  # the first non-None answer wins: no retry, the timeout is raised
    return None


class S3Store:
    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint: str | None,
        client: Any,
        concurrency: int = 8,
        read_timeout: float = READ_TIMEOUT,
        endpoint_setting: str = "METAFLOW_S3_ENDPOINT_URL",
    ) -> None:
        self.bucket, self.prefix, self.endpoint = bucket, prefix.strip("/"), endpoint
        self.client = client
        self.endpoint_setting = endpoint_setting
        self._is_s3: bool | None = None  # whether the endpoint answers as S3 does, once asked
        self.read_timeout, self.connect_timeout = read_timeout, min(CONNECT_TIMEOUT, read_timeout)
        self.transfer = TransferConfig(
            multipart_threshold=MULTIPART, multipart_chunksize=MULTIPART, max_concurrency=concurrency
        )

    @classmethod
    def from_config(cls, root: str, config: Config) -> S3Store:
        parts = urlsplit(root)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(
                f"The S3 store root {root!r} is not an s3://bucket/prefix URL (with no ?query or #fragment, which "
                "would be dropped); fix METAFLOW_CONDA_S3ROOT (or METAFLOW_DATASTORE_SYSROOT_S3, which it comes from "
                "when unset)."
            )
        naming.refuse_empty_segment(
            "S3",
            root,
            f"s3://{parts.netloc}",
            parts.path,
            "METAFLOW_CONDA_S3ROOT (or METAFLOW_DATASTORE_SYSROOT_S3, which it comes from when unset)",
            "aws s3 sync",
        )
        endpoint, endpoint_setting = _endpoint(config)
        read_timeout = float(config.get("S3_READ_TIMEOUT") or READ_TIMEOUT)
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            config=BotoConfig(
                retries={"mode": "standard", "max_attempts": 6},
                max_pool_connections=32,
                connect_timeout=min(CONNECT_TIMEOUT, read_timeout),
                read_timeout=read_timeout,
            ),
        )
        client.meta.events.register_first("needs-retry.s3", _give_up_on_silence)
        return cls(
            parts.netloc,
            parts.path,
            endpoint=endpoint,
            client=client,
            concurrency=int(config.get("S3_TRANSFER_CONCURRENCY") or 8),
            read_timeout=read_timeout,
            endpoint_setting=endpoint_setting,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint={self._scrub(self.endpoint) if self.endpoint else None!r})"

    @property
    def _where_endpoint(self) -> str:
        """The endpoint tried, as messages name it: the configured URL, or AWS's own (said to be the default)."""
        if self.endpoint:
            return f"the S3 endpoint {self._scrub(self.endpoint)}"
        used = getattr(getattr(self.client, "meta", None), "endpoint_url", None)
        return (
            f"the AWS S3 endpoint{f' {used}' if used else ''} (no endpoint set: METAFLOW_S3_ENDPOINT_URL / "
            "AWS_ENDPOINT_URL_S3)"
        )

    @property
    def _endpoint_advice(self) -> str:
        """What to check when the endpoint cannot be reached."""
        if self.endpoint:
            return f"Check {self.endpoint_setting} and the network."
        return (
            "Check the network and any proxy in between; to use another S3 service (MinIO...), set "
            "METAFLOW_S3_ENDPOINT_URL to its URL."
        )

    def _scrub(self, text: str) -> str:
        """``text`` without the endpoint's password, a URL's ``user:password@`` or secret query values."""
        password = urlsplit(self.endpoint).password if self.endpoint else None
        return redact_text(
            redact_url(text) if text == self.endpoint else text, [password] if password else []
        )

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or "//" in key:
            raise StorageError(f"{key!r} is not a valid store key: use relative '/'-separated names.")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, key: str) -> StorageError:
        """One paragraph for a failed call: what, where, how to fix; never credentials."""
        error = self._classify(exc, key)
        return type(error)(self._scrub(error.message))

    def _classify(self, exc: Exception, key: str) -> StorageError:
        where = f"{self.url}/{key}" if key else self.url
        cause = getattr(exc, "__context__", None)
        if type(exc).__name__ == "S3UploadFailedError" and isinstance(
            cause, (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)
        ):
            exc = cause  # boto3's transfer wrapper: judge the service's own answer (or the network's silence)
        if isinstance(exc, botocore.exceptions.ClientError):
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts")
            if status.startswith("5") and attempts:
                return StorageError(
                    f"S3 kept answering {status} for {where} after {int(attempts) + 1} attempts. The service is "
                    f"unavailable or overloaded: retry later, or check {self.endpoint_setting}."
                )
            if not self._answered_by_s3(exc):
                return StorageError(
                    f"The endpoint {self._scrub(str(self.endpoint))} answered HTTP {status} for {where} but does not look like "
                    "S3 (no S3 error code or x-amz header, in that answer nor in one to a listing of the bucket). "
                    f"Check {self.endpoint_setting}: it must be an S3-compatible service's URL, such as "
                    "http://127.0.0.1:9000 for MinIO (Azure Blob Storage and Google Cloud Storage have datastores of "
                    "their own: METAFLOW_DEFAULT_DATASTORE=azure or gs)."
                )
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _PRECONDITION or status in ("412",):
                return PreconditionFailed(f"{where} changed or exists (the conditional write lost).")
            if code in _MISSING or (status == "404" and code != "NoSuchBucket"):
                return MissingObject(f"{where} does not exist.")
            if code == "NoSuchBucket":
                return StorageError(
                    f"The bucket {self.bucket!r} does not exist at {self._where_endpoint}. Create it, or fix "
                    "METAFLOW_CONDA_S3ROOT / METAFLOW_DATASTORE_SYSROOT_S3."
                )
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return StorageError(
                    f"Access to {where} was denied ({code}). Check the AWS credentials and the bucket's policy."
                )
            return StorageError(f"S3 request for {where} failed: {code or status}: {redact_text(str(exc))}.")
        if isinstance(exc, (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError)):
            connect = isinstance(exc, botocore.exceptions.ConnectTimeoutError)
            what, limit = (
                ("accept a connection", self.connect_timeout) if connect else ("answer", self.read_timeout)
            )
            endpoint = self._where_endpoint
            check = (
                f"{self.endpoint_setting} (it must be an S3 service, and not overloaded), "
                if self.endpoint
                else ""
            )
            return StorageError(
                f"{endpoint[0].upper()}{endpoint[1:]} did not {what} for {where} within {limit:g} s, "
                f"{SILENT_ATTEMPTS} times. Check {check}the network and any proxy in between; on a slow link raise "
                "METAFLOW_S3_READ_TIMEOUT."
            )
        if isinstance(
            exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError)
        ):
            return StorageError(f"Cannot reach {self._where_endpoint} for {where}. {self._endpoint_advice}")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StorageError(
                f"No AWS credentials were found for {self.url}. Set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE, as for Metaflow."
            )
        return StorageError(f"S3 request for {where} failed: {type(exc).__name__}: {redact_text(str(exc))}.")

    def _answered_by_s3(self, exc: botocore.exceptions.ClientError) -> bool:
        """Whether an error answer came from an S3 service (see :func:`_s3_answer`); when the answer cannot tell
        (a HEAD's has no body), one listing of the bucket does, once per store (AWS's own endpoint is not asked)."""
        said = _s3_answer(exc) if self.endpoint else True
        if said is not None:
            return said
        if self._is_s3 is None:
            try:
                self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                self._is_s3 = True
            except botocore.exceptions.ClientError as probe:
                self._is_s3 = _s3_answer(probe) is True
            except Exception:
                return True  # no answer to judge: the error is said as it is
        return self._is_s3

    # --- reading ------------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            error = self._error(exc, key)
            if isinstance(error, MissingObject):
                return None
            raise error from None
        return ObjectInfo(key=key, size=int(head["ContentLength"]), version=str(head["ETag"]))

    def open(self, key: str) -> AbstractContextManager[IO[bytes]]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except Exception as exc:
            raise self._error(exc, key) from None
        return _closing(body)

    def get_file(self, key: str, dest: Path) -> None:
        name = self._key(key)
        download_beside(
            dest,
            f"{self.url}/{key}",
            lambda tmp: self.client.download_file(self.bucket, name, tmp, Config=self.transfer),
            lambda exc: self._error(exc, key),
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        skip = len(f"{self.prefix}/") if self.prefix else 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"][skip:], size=int(item["Size"]), version=str(item["ETag"])
                    )
        except Exception as exc:
            raise self._error(exc, prefix) from None

    # --- writing ------------------------------------------------------------------------------------

    def put_file(self, key: str, src: Path) -> ObjectInfo:
        size = src.stat().st_size
        try:
            if size < MULTIPART:  # one PUT, whose answer names the version: no HEAD after it
                with open(src, "rb") as body:
                    done = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=body)
                return ObjectInfo(key=key, size=size, version=str(done["ETag"]))
            self.client.upload_file(str(src), self.bucket, self._key(key), Config=self.transfer)
        except Exception as exc:
            raise self._error(exc, key) from None
        info = self.stat(key)  # the transfer manager does not return the completed upload's ETag
        if info is None:
            raise StorageError(
                f"{self.url}/{key} is missing right after its upload; check the bucket's lifecycle rules."
            )
        return info

    def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> ObjectInfo:
        if if_absent and if_version is not None:
            raise ValueError("if_absent and if_version are exclusive")
        extra: dict[str, str] = {}
        if if_absent:
            extra["IfNoneMatch"] = "*"
        if if_version is not None:
            extra["IfMatch"] = if_version
        try:
            done = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except Exception as exc:
            error = self._error(exc, key)
            if isinstance(error, MissingObject) and if_version is not None:  # If-Match on a missing key: 404
                error = PreconditionFailed(f"{self.url}/{key} was deleted (the conditional write lost).")
            raise error from None
        return ObjectInfo(key=key, size=len(data), version=str(done["ETag"]))

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            error = self._error(exc, key)
            if not isinstance(error, MissingObject):
                raise error from None


@contextmanager
def _closing(body: Any) -> Iterator[IO[bytes]]:
    try:
        yield body
    finally:
        body.close()


def _s3_answer(exc: botocore.exceptions.ClientError) -> bool | None:
    """True if an error answer is S3's (an S3 error code in its body, or an x-amz header), False if it is
    another service's (Azure's x-ms- headers), None if it cannot tell (no body: botocore's code is the status)."""
    headers = {name.lower() for name in exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})}
    if any(name.startswith("x-ms-") for name in headers):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if any(name.startswith("x-amz") for name in headers) or (code and not code.isdigit()):
        return True
    return None


def _endpoint(config: Config) -> tuple[str | None, str]:
    """The configured endpoint and its setting, checked: boto3's own error for ``minio:9000`` reads as a bug in
    the plugin."""
    from envcore.config import parsed_url, redact_url

    setting, endpoint = "METAFLOW_S3_ENDPOINT_URL", config.get("S3_ENDPOINT_URL")
    if not endpoint and os.environ.get("AWS_ENDPOINT_URL_S3"):
        setting, endpoint = "AWS_ENDPOINT_URL_S3", os.environ["AWS_ENDPOINT_URL_S3"]
    if not endpoint:
        return None, setting  # AWS itself: a message names the setting that would choose another endpoint
    parts = parsed_url(str(endpoint))
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{setting} is {redact_url(str(endpoint))!r}, which is not an http(s) URL. Set it to the S3 service's "
            "URL, such as http://127.0.0.1:9000 or https://s3.example.com."
        )
    return str(endpoint), setting
