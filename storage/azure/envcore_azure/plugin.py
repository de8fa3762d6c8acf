"""Hook implementations only; the Azure SDK and adlfs are imported when the store is built."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import Setting, StoragePlugin

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Store


def _store(root: str, config: Config) -> Store:
    from envcore_azure.store import AzureStore

    return AzureStore.from_config(root, config)


@hookimpl
def envcore_storage() -> Iterator[StoragePlugin]:
    yield StoragePlugin(
        name="azure", factory=_store, summary="Azure Blob Storage (adlfs, azure-storage-blob)"
    )


@hookimpl
def envcore_settings() -> Iterator[Setting]:
    yield Setting(
        name="AZURE_STORAGE_BLOB_SERVICE_ENDPOINT",
        help="Blob endpoint (Metaflow's setting), e.g. https://myaccount.blob.core.windows.net/ (a SAS may follow "
        "as its query string: it is masked when shown)",
    )
    yield Setting(
        name="AZURE_STORAGE_CONNECTION_STRING",
        secret=True,
        help="Connection string (else AZURE_STORAGE_CONNECTION_STRING); holds the endpoint and a key or SAS",
    )
    yield Setting(
        name="AZURE_STORAGE_ACCOUNT_KEY",
        secret=True,
        help="Account key (else AZURE_STORAGE_KEY); without key or SAS, DefaultAzureCredential is used",
    )
    yield Setting(
        name="AZURE_TRANSFER_CONCURRENCY",
        default=8,
        kind="int",
        minimum=1,
        help="Parallel blocks per transfer",
    )
    yield Setting(
        name="AZURE_READ_TIMEOUT",
        default=10,
        kind="float",
        minimum=0.1,
        help="Seconds to wait for each read from Azure (not a whole transfer); a silent endpoint fails after 4",
    )
