"""Hook implementations only; gcsfs is imported when the store is built."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import Setting, StoragePlugin

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Store


def _store(root: str, config: Config) -> Store:
    from envcore_gs.store import GSStore

    return GSStore.from_config(root, config)


@hookimpl
def envcore_storage() -> Iterator[StoragePlugin]:
    yield StoragePlugin(name="gs", factory=_store, summary="Google Cloud Storage (gcsfs, JSON API)")


@hookimpl
def envcore_settings() -> Iterator[Setting]:
    yield Setting(
        name="GS_ENDPOINT_URL",
        help="GCS JSON API endpoint, e.g. a fake-gcs-server; default STORAGE_EMULATOR_HOST, else Google",
    )
    yield Setting(
        name="GS_TOKEN",
        secret=True,
        help="gcsfs token: google_default (application default credentials, the default), cloud, anon, "
        "a service-account JSON key file (or its JSON text), or an access token; anon with an emulator endpoint",
    )
    yield Setting(
        name="GS_TRANSFER_CONCURRENCY",
        default=8,
        kind="int",
        minimum=1,
        help="Parallel parts per transfer (1: no compose)",
    )
    yield Setting(
        name="GS_READ_TIMEOUT",
        default=15,
        kind="float",
        minimum=0.1,
        help="Seconds to wait for each read from GCS (not a whole transfer); a silent endpoint fails after 3",
    )
