"""Hook implementations only; boto3 is imported when the store is built."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from envcore import hookimpl
from envcore.types import Setting, StoragePlugin

if TYPE_CHECKING:
    from envcore.config import Config
    from envcore.types import Store


def _store(root: str, config: Config) -> Store:
    from envcore_s3.store import S3Store

    return S3Store.from_config(root, config)


@hookimpl
def envcore_storage() -> Iterator[StoragePlugin]:
    yield StoragePlugin(name="s3", factory=_store, summary="Amazon S3 and compatible services (boto3)")


@hookimpl
def envcore_settings() -> Iterator[Setting]:
    yield Setting(
        name="S3_ENDPOINT_URL", help="S3 endpoint (Metaflow's setting), e.g. a MinIO or moto server"
    )
    yield Setting(
        name="S3_TRANSFER_CONCURRENCY", default=8, kind="int", minimum=1, help="Parallel parts per transfer"
    )
    yield Setting(
        name="S3_READ_TIMEOUT",
        default=15,
        kind="float",
        minimum=0.1,
        help="Seconds to wait for each read from S3 (not a whole transfer); a silent endpoint fails after 3",
    )
