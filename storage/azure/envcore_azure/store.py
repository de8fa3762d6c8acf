"""The Store protocol on Azure Blob Storage, with adlfs and azure-storage-blob.

* Create-if-absent and compare-and-swap are the service's own conditional writes (``If-None-Match: *`` and
  ``If-Match: <etag>``, through azure-storage-blob: adlfs has no If-Match and returns no ETag); the
  version token is the ETag.
* File transfers (``put_file``, ``get_file``) and deletes go through adlfs, on an async client configured
  here: files above 16 MiB go up in 8 MiB blocks, ``AZURE_TRANSFER_CONCURRENCY`` at a time, and the blob is
  published by the final Put Block List, so readers never see a partial object. Writers of one key racing to
  commit (same key, same content) all succeed: a commit whose blocks the winner's discarded finds its blob done.
* ``stat``, ``open`` and ``list`` use azure-storage-blob directly: adlfs turns every 404 into
  ``FileNotFoundError`` (a missing container, a missing blob and a server that is not Azure look alike), its
  file reads are range requests not pinned to one ETag, and its ``find`` cannot list by a partial name.
  ``open`` streams in 4 MiB chunks pinned to the first response's ETag (a blob replaced mid-read fails
  instead of mixing two versions); ``list`` follows the service's pages lazily.
* Transient errors (5xx, timeouts, resets) are retried with exponential backoff by the SDK's retry policy.
* Credentials: a connection string, an account key, a SAS token or ``DefaultAzureCredential``, as for
  Metaflow; none of them is kept in the store's ``repr``, URL or messages.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.storage.blob import BlobServiceClient, ExponentialRetry, StorageStreamDownloader
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
from azure.storage.blob.aio import ExponentialRetry as AsyncExponentialRetry

from envcore import naming
from envcore.config import Config, redact_text, redact_url
from envcore.errors import ConfigError, MissingObject, PreconditionFailed, StorageError
from envcore.fetch import download_beside
from envcore.types import ObjectInfo

MiB = 1024 * 1024
READ_TIMEOUT = 10  # seconds without a byte from the service, per read (not per transfer)
CLIENT_OPTIONS: dict[str, Any] = {
    "max_single_put_size": 16 * MiB,  # larger uploads go in blocks
    "max_block_size": 8 * MiB,
    "max_single_get_size": 4 * MiB,  # the first GET of a download; the rest in chunks
    "max_chunk_get_size": 4 * MiB,
    "connection_timeout": 10,
    "read_timeout": READ_TIMEOUT,  # a silent endpoint fails after 1 + retry_read attempts: ~45 s
}
RETRY: dict[str, Any] = {
    "initial_backoff": 0.5,
    "increment_base": 1.5,
    "retry_total": 5,
    "retry_status": 5,  # the SDK's default (3) would cap 5xx retries below retry_total
    "retry_connect": 5,
    "retry_read": 3,  # timeouts and resets after the request was sent (the SDK's default)
    "random_jitter_range": 0.3,
}
_CONTAINER = re.compile(r"^(\$root|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$")
_SIG = re.compile(r"(?i)\b(sig|signature|accountkey|sharedaccesssignature)=[^&;\s'\"]+")
_PRECONDITION = {"BlobAlreadyExists", "ConditionNotMet", "TargetConditionNotMet"}
_DENIED = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "AuthorizationResourceTypeMismatch",
    "InsufficientAccountPermissions",
    "AccountIsDisabled",
}


def parse_root(root: str) -> tuple[str, str]:
    """``azure://container/prefix`` or Metaflow's ``container/prefix`` → (container, prefix)."""
    text = root.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        rest = text
    elif scheme != "azure":
        rest = ""
    container, _, prefix = rest.strip("/").partition("/")
    if not _CONTAINER.match(container):
        raise ConfigError(
            f"The Azure store root {root!r} is not azure://container/prefix (or Metaflow's container/prefix "
            "form) with a valid container name (3-63 lowercase letters, digits and single hyphens); fix "
            "METAFLOW_CONDA_AZUREROOT or METAFLOW_DATASTORE_SYSROOT_AZURE."
        )
    naming.refuse_empty_segment(
        "Azure",
        root,
        f"azure://{container}",
        prefix,
        "METAFLOW_CONDA_AZUREROOT (or METAFLOW_DATASTORE_SYSROOT_AZURE, which it comes from when unset)",
        "azcopy sync",
    )
    return container, prefix.strip("/")


@dataclass
class Connection:
    """The two clients on one account, how they authenticate, and the values never to show."""

    endpoint: str  # shown in messages: no query string, no credentials
    auth: str  # "connection string" | "account key" | "SAS token" | "DefaultAzureCredential"
    sync: BlobServiceClient
    aio: AsyncBlobServiceClient
    secrets: list[str] = field(default_factory=list, repr=False)
    sas_expiry: str = ""  # the SAS token's se= (when it stops working), as given
    sas_permissions: str = ""  # its sp= (r read, w write, d delete, l list...)
    sas_setting: str = ""  # where it was set
    read_timeout: float = READ_TIMEOUT
    connect_timeout: float = CLIENT_OPTIONS["connection_timeout"]
    made_from: str = ""  # the variable naming the account whose default endpoint is used (no endpoint set)


def _sas_field(sas: str, name: str) -> str:
    """A SAS token's ``se=`` (expiry) or ``sp=`` (permissions), as given; "" when absent."""
    from urllib.parse import parse_qs

    return (parse_qs(sas.lstrip("?")).get(name) or [""])[0]


_PERMISSIONS = {"r": "read", "w": "write", "d": "delete", "l": "list"}  # a SAS's sp= letters envcore needs


def _expired(expiry: str) -> bool:
    """Whether a SAS ``se=`` time (``2026-01-01T00:00:00Z``, or a date) is past; False when it is unreadable."""
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
    except ValueError:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)) < datetime.now(timezone.utc)


def _shown(url: str) -> str:
    """An endpoint as messages show it: no query string (a SAS), no ``user:password@``."""
    return redact_url(url.split("?", 1)[0].split("#", 1)[0]).rstrip("/")


def _setting(config: Config, name: str, *plain: str) -> str | None:
    """``METAFLOW_<name>`` (or its config file), else the first of the plain environment variables set."""
    value = config.get(name) if name else None
    if value:
        return str(value)
    return next((config.environ[var] for var in plain if config.environ.get(var)), None)


def _account_name(endpoint: str, environ: Mapping[str, str]) -> str | None:
    named = environ.get("AZURE_STORAGE_ACCOUNT_NAME") or environ.get("AZURE_STORAGE_ACCOUNT")
    if named:
        return named
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ".blob." in host:
        return host.split(".", 1)[0]
    first = parts.path.strip("/").split("/", 1)[0]  # emulator style: http://127.0.0.1:10000/devstoreaccount1
    return first or None


def connect(config: Config) -> Connection:
    """Build the clients from Metaflow's settings, a connection string, an account key or SAS, or Entra ID."""
    endpoint_setting = _setting(config, "AZURE_STORAGE_BLOB_SERVICE_ENDPOINT")
    conn_str = _setting(config, "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING")
    read_timeout = float(config.get("AZURE_READ_TIMEOUT") or READ_TIMEOUT)
    options = {**CLIENT_OPTIONS, "read_timeout": read_timeout}
    if read_timeout < CLIENT_OPTIONS["connection_timeout"]:
        options["connection_timeout"] = read_timeout
    shown_setting = _shown(endpoint_setting) if endpoint_setting else ""
    setting_secrets = [urlsplit(endpoint_setting).query] if endpoint_setting else []
    if conn_str:
        try:
            sync = BlobServiceClient.from_connection_string(
                conn_str, retry_policy=ExponentialRetry(**RETRY), **options
            )
            aio = AsyncBlobServiceClient.from_connection_string(
                conn_str, retry_policy=AsyncExponentialRetry(**RETRY), **options
            )
        except (ValueError, AzureError):
            raise ConfigError(
                "The Azure Storage connection string (METAFLOW_AZURE_STORAGE_CONNECTION_STRING or "
                "AZURE_STORAGE_CONNECTION_STRING) is malformed; copy it again from the storage account's "
                "'Access keys' page (it is not shown here because it holds a secret)."
            ) from None
        endpoint = _shown(sync.url)
        if endpoint_setting and shown_setting != endpoint:
            raise ConfigError(
                f"METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT is {shown_setting!r} but the "
                f"Azure Storage connection string points at {endpoint!r}. Unset one of them so that envcore "
                "uses the account you mean."
            )
        secrets = [conn_str, *re.findall(r"(?i)(?:AccountKey|SharedAccessSignature)=([^;]+)", conn_str)]
        secrets = _with_parts([*secrets, *setting_secrets])
        conn_sas = next(iter(re.findall(r"(?i)SharedAccessSignature=([^;]+)", conn_str)), "")
        return Connection(
            endpoint,
            "connection string",
            sync,
            aio,
            secrets,
            sas_expiry=_sas_field(conn_sas, "se"),
            sas_permissions=_sas_field(conn_sas, "sp"),
            sas_setting="the connection string in "
            + ("METAFLOW_" if config.get("AZURE_STORAGE_CONNECTION_STRING") else "")
            + "AZURE_STORAGE_CONNECTION_STRING",
            read_timeout=read_timeout,
            connect_timeout=options["connection_timeout"],
        )

    made_from = ""
    if not endpoint_setting:
        made_from = next(
            (
                var
                for var in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT")
                if config.environ.get(var)
            ),
            "",
        )
        account = config.environ.get(made_from) if made_from else None
        if not account:
            raise ConfigError(
                "No Azure Blob endpoint is configured. Set METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT (e.g. "
                "https://myaccount.blob.core.windows.net/), as for Metaflow's Azure datastore, or "
                "AZURE_STORAGE_CONNECTION_STRING."
            )
        endpoint_setting = f"https://{account}.blob.core.windows.net"
    parts = urlsplit(endpoint_setting)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT is {shown_setting!r}, which is not "
            "an http(s) URL; set it to the account's blob endpoint, e.g. https://myaccount.blob.core.windows.net/."
        )
    endpoint = endpoint_setting.split("?", 1)[0].split("#", 1)[0].rstrip("/")  # the clients' URL
    key = _setting(config, "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY")
    sas = parts.query or _setting(config, "", "AZURE_STORAGE_SAS_TOKEN")
    sync_cred: Any
    aio_cred: Any
    if key:
        account = _account_name(endpoint, config.environ)
        if not account:
            raise ConfigError(
                f"An Azure Storage account key is set but the account name cannot be told from the endpoint "
                f"{endpoint!r}; set AZURE_STORAGE_ACCOUNT_NAME."
            )
        import base64
        import binascii

        try:
            base64.b64decode(key, validate=True)
        except binascii.Error:
            raise ConfigError(
                "The Azure Storage account key (METAFLOW_AZURE_STORAGE_ACCOUNT_KEY, or AZURE_STORAGE_KEY) is set "
                "but is not base64, as account keys are: copy it again from the account's access keys, or use "
                "a connection string or SAS token instead."
            ) from None
        sync_cred = aio_cred = AzureNamedKeyCredential(account, key)
        auth, secrets = "account key", [key]
    elif sas:
        sync_cred = aio_cred = AzureSasCredential(sas.lstrip("?"))
        auth, secrets = "SAS token", [sas, sas.lstrip("?")]
    else:
        from azure.identity import DefaultAzureCredential
        from azure.identity.aio import DefaultAzureCredential as AsyncDefaultAzureCredential

        sync_cred, aio_cred = DefaultAzureCredential(), AsyncDefaultAzureCredential()
        auth, secrets = "DefaultAzureCredential", []
    try:
        sync = BlobServiceClient(
            endpoint, credential=sync_cred, retry_policy=ExponentialRetry(**RETRY), **options
        )
        aio = AsyncBlobServiceClient(
            endpoint, credential=aio_cred, retry_policy=AsyncExponentialRetry(**RETRY), **options
        )
    except ValueError as exc:  # e.g. "Token credential is only supported with HTTPS"
        raise ConfigError(
            f"The Azure Blob client for {_shown(endpoint)} cannot be built with {auth} ({_shown(str(exc))}). "
            "Use an https:// endpoint for DefaultAzureCredential, or give an account key "
            "(METAFLOW_AZURE_STORAGE_ACCOUNT_KEY), a SAS token or a connection string."
        ) from None
    password = parts.password
    secrets = _with_parts([*secrets, *setting_secrets, *([password] if password else [])])
    return Connection(
        _shown(endpoint),
        auth,
        sync,
        aio,
        secrets,
        sas_expiry=_sas_field(sas, "se") if auth == "SAS token" and sas else "",
        sas_permissions=_sas_field(sas, "sp") if auth == "SAS token" and sas else "",
        sas_setting=(
            "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT (its query string)"
            if parts.query
            else "AZURE_STORAGE_SAS_TOKEN"
        ),
        read_timeout=read_timeout,
        connect_timeout=options["connection_timeout"],
        made_from=made_from,
    )


def _with_parts(secrets: list[str]) -> list[str]:
    """Each secret as given, URL-decoded, and its ``sig=`` value alone (messages may quote any of them)."""
    from urllib.parse import parse_qsl, quote, unquote

    found: set[str] = set()
    for secret in filter(None, secrets):
        found |= {secret, secret.lstrip("?"), unquote(secret)}
        for name, value in parse_qsl(secret.lstrip("?")):
            if name.lower() in ("sig", "signature") and value:
                found |= {value, quote(value, safe="")}  # decoded, and encoded as a URL carries it
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def _file_system(connection: Connection, concurrency: int) -> Any:
    """adlfs on the async client configured here (same account, credential, block sizes and retries)."""
    import adlfs  # type: ignore[import-untyped]

    class FileSystem(adlfs.AzureBlobFileSystem):  # type: ignore[misc]
        def do_connect(self) -> None:  # adlfs would build a client from its arguments and AZURE_* variables
            self.service_client = connection.aio
            self.account_url = connection.endpoint

    # anon=True: adlfs must not look for credentials of its own; no listing cache: other writers exist
    return FileSystem(
        account_name="envcore",
        anon=True,
        skip_instance_cache=True,
        use_listings_cache=False,
        max_concurrency=concurrency,
    )


def _etag(value: Any) -> str:
    return '"' + str(value).strip('"') + '"'


class AzureStore:
    page_size = 5000  # blobs per listing request (the service's maximum)

    def __init__(self, container: str, prefix: str, connection: Connection, *, concurrency: int = 8) -> None:
        self.container, self.prefix = container, prefix.strip("/")
        self._conn = connection
        self.concurrency = concurrency
        self._blobs = connection.sync.get_container_client(container)
        self._fs = _file_system(connection, concurrency)

    @classmethod
    def from_config(cls, root: str, config: Config) -> AzureStore:
        container, prefix = parse_root(root)
        concurrency = int(config.get("AZURE_TRANSFER_CONCURRENCY") or 8)
        return cls(container, prefix, connect(config), concurrency=concurrency)

    def __repr__(self) -> str:
        return f"AzureStore({self.url!r}, endpoint={self._scrub(self.endpoint)!r}, auth={self._conn.auth!r})"

    @property
    def url(self) -> str:
        return f"azure://{self.container}/{self.prefix}".rstrip("/")

    @property
    def endpoint(self) -> str:
        return self._conn.endpoint

    @property
    def _where_endpoint(self) -> str:
        """The endpoint tried, as messages name it: where it came from when no endpoint was set."""
        made = self._conn.made_from
        return f"the Azure Blob endpoint {self.endpoint}" + (
            f" (made from {made}; no endpoint set: METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT)"
            if made
            else ""
        )

    @property
    def _endpoint_advice(self) -> str:
        """What to check when the endpoint cannot be reached, or does not answer."""
        if self._conn.made_from:
            return (
                f"Check the account name in {self._conn.made_from}, the network and any proxy in between "
                "(HTTPS_PROXY); to use another endpoint (Azurite, another Azure cloud...), set "
                "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT to its URL."
            )
        return (
            "Check METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT (or the connection string) and the network."
        )

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or "//" in key:
            raise StorageError(f"{key!r} is not a valid store key: use relative '/'-separated names.")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _scrub(self, text: str) -> str:
        return _SIG.sub(r"\1=********", redact_text(text, self._conn.secrets))

    def _error(
        self, exc: BaseException, key: str, *, conditional: bool = False, need: str = "r"
    ) -> StorageError:
        """One paragraph for a failed call needing the ``need`` permission (a SAS's letter: r, w, d, l): what,
        where, how to fix; never credentials."""
        error = self._classify(exc, key, conditional=conditional, need=need)
        return type(error)(self._scrub(error.message))

    def _classify(
        self, exc: BaseException, key: str, *, conditional: bool = False, need: str = "r"
    ) -> StorageError:
        where = f"{self.url}/{key}" if key else self.url
        cause = exc.__cause__ if isinstance(exc, FileNotFoundError) and exc.__cause__ else exc  # from adlfs
        code = getattr(cause, "error_code", "") or ""
        code = str(
            getattr(code, "value", code)
        )  # azure-storage-blob's StorageErrorCode: str() is its enum name
        if isinstance(exc, FileNotFoundError) and exc.strerror == "No such container":
            code = "ContainerNotFound"
        response = getattr(cause, "response", None)
        status = int(getattr(cause, "status_code", 0) or 0)
        if response is not None and status >= 500:
            return StorageError(
                f"Azure Blob Storage kept answering HTTP {status} for {where} after {RETRY['retry_status'] + 1} "
                "attempts. The service (or a gateway in front of it) is unavailable or overloaded: retry later"
                f"{'' if self._conn.made_from else ', or check METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT'}."
            )
        if response is not None and "x-ms-request-id" not in response.headers:
            return StorageError(
                f"The endpoint {self.endpoint} answered HTTP {status} for {where} but does not look like Azure "
                "Blob Storage. Check METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT (or the connection string): "
                "it must be the account's blob endpoint, e.g. https://myaccount.blob.core.windows.net/."
            )
        if code == "ContainerNotFound":
            return StorageError(
                f"The container {self.container!r} does not exist at {self._where_endpoint}. Create it, or fix "
                "METAFLOW_CONDA_AZUREROOT / METAFLOW_DATASTORE_SYSROOT_AZURE."
            )
        if isinstance(cause, ResourceModifiedError) or code in _PRECONDITION or status == 412:
            return PreconditionFailed(f"{where} changed or exists (the conditional write lost).")
        if isinstance(cause, (ResourceNotFoundError, FileNotFoundError)):
            if conditional:  # compare-and-swap on an object deleted meanwhile
                return PreconditionFailed(f"{where} was deleted (the conditional write lost).")
            return MissingObject(f"{where} does not exist.")
        if isinstance(cause, ClientAuthenticationError) and response is None:
            return StorageError(
                f"No usable Azure credentials were found for {self.url} ({type(cause).__name__}). Set "
                "AZURE_STORAGE_CONNECTION_STRING or METAFLOW_AZURE_STORAGE_ACCOUNT_KEY, or sign in for "
                "DefaultAzureCredential (az login, a managed identity or AZURE_CLIENT_ID/AZURE_TENANT_ID/"
                "AZURE_CLIENT_SECRET), as for Metaflow."
            )
        if isinstance(cause, ClientAuthenticationError) or code in _DENIED or status in (401, 403):
            if _expired(self._conn.sas_expiry):
                return StorageError(
                    f"Access to {where} was denied ({code or status}): the SAS token expired at "
                    f"{self._conn.sas_expiry} (its se= parameter). Create a new one and set it again."
                )
            allowed = self._conn.sas_permissions
            if allowed and need not in allowed:
                can = " and ".join(name for letter, name in _PERMISSIONS.items() if letter in allowed)
                return StorageError(
                    f"Access to {where} was denied ({code or status}): the SAS token in {self._conn.sas_setting} "
                    f"can {can or 'do none of what envcore needs'} but not {_PERMISSIONS[need]} (it lacks the "
                    f"{_PERMISSIONS[need]} permission: sp={allowed}). Set a SAS token with read, write, delete and "
                    "list permissions (sp=rwdl) there, or an account key (METAFLOW_AZURE_STORAGE_ACCOUNT_KEY)."
                )
            return StorageError(
                f"Access to {where} was denied ({code or status}, authenticating with {self._conn.auth}). Check "
                "the account key or SAS token, or that the identity has the 'Storage Blob Data Contributor' "
                "role on the container."
            )
        if isinstance(cause, (ServiceResponseTimeoutError, ServiceRequestTimeoutError)):
            connect = isinstance(cause, ServiceRequestTimeoutError)
            what = "accept a connection" if connect else "answer"
            limit = self._conn.connect_timeout if connect else self._conn.read_timeout
            endpoint = self._where_endpoint
            check = (
                f"the account name in {self._conn.made_from}, "
                if self._conn.made_from
                else "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT (or the connection string: it must be the "
                "account's blob endpoint, and not overloaded), "
            )
            return StorageError(
                f"{endpoint[0].upper()}{endpoint[1:]} did not {what} for {where} within {limit:g} s, "
                f"{RETRY['retry_read' if not connect else 'retry_connect'] + 1} times. Check {check}the network "
                "and any proxy in between; on a slow link raise METAFLOW_AZURE_READ_TIMEOUT."
            )
        if isinstance(cause, (ServiceRequestError, ServiceResponseError)):
            return StorageError(
                f"Cannot reach {self._where_endpoint} for {where} (after retries). {self._endpoint_advice}"
            )
        if isinstance(cause, HttpResponseError):
            return StorageError(
                f"Azure Blob request for {where} failed: HTTP {status} {code or cause.reason or ''}. "
                "Retry later, or check the storage account's state in the Azure portal."
            )
        return StorageError(
            f"Azure Blob request for {where} failed: {type(cause).__name__}: {self._scrub(str(cause))[:300]}."
        )

    # --- reading ------------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            props = self._blobs.get_blob_client(self._key(key)).get_blob_properties()
        except Exception as exc:
            error = self._error(exc, key)
            if isinstance(error, MissingObject):
                return None
            raise error from None
        return ObjectInfo(key=key, size=int(props.size), version=_etag(props.etag))

    def open(self, key: str) -> AbstractContextManager[IO[bytes]]:
        try:
            stream = self._blobs.get_blob_client(self._key(key)).download_blob(max_concurrency=1)
        except Exception as exc:
            raise self._error(exc, key) from None
        return _reading(_BlobReader(stream, self, key))

    def get_file(self, key: str, dest: Path) -> None:
        full = f"{self.container}/{self._key(key)}"
        download_beside(
            dest,
            f"{self.url}/{key}",
            lambda tmp: self._fs.get_file(full, tmp, max_concurrency=self.concurrency),
            lambda exc: self._error(exc, key),
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        skip = len(f"{self.prefix}/") if self.prefix else 0
        try:
            pages = self._blobs.list_blobs(
                name_starts_with=full or None, include=["metadata"], results_per_page=self.page_size
            )
            for blob in pages:
                if (blob.metadata or {}).get("hdi_isfolder") == "true":
                    continue  # a directory of an account with a hierarchical namespace
                yield ObjectInfo(key=blob.name[skip:], size=int(blob.size), version=_etag(blob.etag))
        except Exception as exc:
            raise self._error(exc, prefix, need="l") from None

    # --- writing ------------------------------------------------------------------------------------

    def put_file(self, key: str, src: Path) -> ObjectInfo:
        """One request for a small file, blocks in parallel committed at once for a large one; the answer names
        the version (no HEAD after it).

        Machines caching one package race to commit its blocks, and the first commit discards the others'
        uncommitted blocks: their commits fail with InvalidBlockList. Keys name their content, so a blob of the
        same size committed meanwhile is this upload done; otherwise it is uploaded once more, with new blocks.
        """
        size = src.stat().st_size
        try:
            return self._upload(key, src, size)
        except Exception as exc:
            if getattr(exc, "error_code", None) != "InvalidBlockList":  # a str enum from azure-storage-blob
                raise self._error(exc, key, need="w") from None
        info = self.stat(key)
        if info is not None and info.size == size:
            return info
        try:
            return self._upload(key, src, size)
        except Exception as exc:
            raise self._error(exc, key, need="w") from None

    def _upload(self, key: str, src: Path, size: int) -> ObjectInfo:
        with open(src, "rb") as data:
            done = self._blobs.get_blob_client(self._key(key)).upload_blob(
                data, length=size, overwrite=True, max_concurrency=self.concurrency
            )
        return ObjectInfo(key=key, size=size, version=_etag(done["etag"]))

    def put_bytes(
        self, key: str, data: bytes, *, if_absent: bool = False, if_version: str | None = None
    ) -> ObjectInfo:
        if if_absent and if_version is not None:
            raise ValueError("if_absent and if_version are exclusive")
        extra: dict[str, Any] = {}
        if if_version is not None:
            extra = {"etag": if_version, "match_condition": MatchConditions.IfNotModified}
        try:
            done = self._blobs.get_blob_client(self._key(key)).upload_blob(
                data, overwrite=not if_absent, max_concurrency=self.concurrency, **extra
            )
        except Exception as exc:
            raise self._error(exc, key, conditional=if_version is not None, need="w") from None
        return ObjectInfo(key=key, size=len(data), version=_etag(done["etag"]))

    def delete(self, key: str) -> None:
        try:
            self._fs.rm_file(f"{self.container}/{self._key(key)}")
        except Exception as exc:
            error = self._error(exc, key, need="d")
            if not isinstance(error, MissingObject):
                raise error from None


class _BlobReader(io.RawIOBase):
    """A file object over one download: chunks are fetched as read, all pinned to the first ETag."""

    def __init__(self, stream: StorageStreamDownloader[bytes], store: AzureStore, key: str) -> None:
        self._stream, self._store, self._key = stream, store, key

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            return self._stream.read(-1 if size is None else size)
        except Exception as exc:
            if isinstance(exc, ResourceModifiedError) or getattr(exc, "status_code", 0) == 412:
                raise StorageError(
                    f"{self._store.url}/{self._key} was replaced while it was being read; read it again."
                ) from None
            raise self._store._error(exc, self._key) from None

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


@contextmanager
def _reading(reader: _BlobReader) -> Iterator[IO[bytes]]:
    try:
        yield cast(IO[bytes], reader)
    finally:
        reader.close()
