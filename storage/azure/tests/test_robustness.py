"""Robustness of envcore-azure against Azurite and a silent listener on 127.0.0.1: no secret in any
message of the real ``envcore`` command, and a silent endpoint fails clearly within bounded time. (A local
write failure is checked by the conformance kit.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from envcore.config import Config
from envcore.errors import StorageError
from envcore.testing.robustness import (
    assert_clear_and_secret_free,
    envcore,
    silent_endpoint,
    stat_at_a_silent_endpoint,
)

# --- the tests -------------------------------------------------------------------------------------------

SAS = "sv=2026-10-06&sr=c&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig=kTRLdiQvHd5qjiL27sj%2BOGWd0OdU2c1sD%2B%2BpVzOPXqk%3D"
SIG = ("kTRLdiQvHd5qjiL27sj%2BOGWd0OdU2c1sD%2B%2BpVzOPXqk%3D", "kTRLdiQvHd5qjiL27sj+OGWd0OdU2c1sD++pVzOPXqk=")


def _store(root: str) -> Any:
    from envcore_azure.store import AzureStore

    return AzureStore.from_config(root, Config.load())


def test_a_silent_endpoint_is_one_clear_error_in_bounded_time(
    azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that accepts connections and never answers: 4 attempts of METAFLOW_AZURE_READ_TIMEOUT
    (10 s by default: ~50 s measured), not 4 x 120 s; 1 s here keeps the test short."""

    def open_store(port: int) -> Any:
        monkeypatch.setenv(
            "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT", f"http://127.0.0.1:{port}/acct?{SAS}"
        )
        monkeypatch.delenv("METAFLOW_AZURE_STORAGE_ACCOUNT_KEY")
        monkeypatch.setenv("METAFLOW_AZURE_READ_TIMEOUT", "1")
        return _store("azure://container/conda_env")

    message, took, port = stat_at_a_silent_endpoint(open_store)
    assert message.startswith(
        f"The Azure Blob endpoint http://127.0.0.1:{port}/acct did not answer for azure://container/conda_env/x "
        "within 1 s, 4 times."
    ), message
    assert "METAFLOW_AZURE_READ_TIMEOUT" in message
    assert 4 <= took < 30, took  # 4 attempts of 1 s, and the SDK's backoff (0.5 s, then ~2.75 s, ~3.9 s)


def test_no_secret_in_any_message_of_the_cli(azurite: Any, azure_env: dict[str, str], tmp_path: Path) -> None:
    """A SAS token as the endpoint's query string (a form the README documents), an account key and a
    password in the endpoint appear in no output of the real command, however the endpoint fails: refused,
    silent, a real service that rejects the signature; nor in ``envcore config show``."""
    key = azure_env["METAFLOW_AZURE_STORAGE_ACCOUNT_KEY"]
    secrets = [*SIG, "EndpointPw555", key]
    container = azurite.new_container()
    env = {
        "METAFLOW_DEFAULT_DATASTORE": "azure",
        "METAFLOW_CONDA_AZUREROOT": f"azure://{container}/conda_env",
    }
    base = azurite.endpoint.removeprefix("http://")
    with silent_endpoint() as port:
        cases = {
            "refused": (f"http://127.0.0.1:9/devstoreaccount1?{SAS}", "Cannot reach the Azure Blob endpoint"),
            "silent": (f"http://127.0.0.1:{port}/devstoreaccount1?{SAS}", "did not answer"),
            "denied": (f"http://{base}?{SAS}", "was denied"),
            "password": (
                "http://bob:EndpointPw555@127.0.0.1:9/devstoreaccount1",
                "http://127.0.0.1:9/devstore",
            ),
        }
        for case, (endpoint, phrase) in cases.items():
            run_env = {
                **env,
                "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT": endpoint,
                "METAFLOW_AZURE_READ_TIMEOUT": "1",
            }
            done = envcore(tmp_path / case, "show", "team/proj/env:v1", **run_env)
            assert_clear_and_secret_free(done, secrets, phrase)
            if case in ("denied", "password"):  # with the account key as well (the others retry for seconds)
                keyed = {**run_env, "METAFLOW_AZURE_STORAGE_ACCOUNT_KEY": key}
                done = envcore(tmp_path / case, "show", "team/proj/env:v1", **keyed)
                assert_clear_and_secret_free(done, secrets)
        shown = envcore(tmp_path / "config", "config", "show", **run_env)
        assert shown.returncode == 0 and "127.0.0.1:9/devstoreaccount1" in shown.stdout, shown.stderr
        assert not [s for s in secrets if s in shown.stdout + shown.stderr], shown.stdout


def test_an_expired_sas_token_is_named_as_such(
    azurite: Any, azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An expired SAS token was refused with the words of a wrong one ("Check the account key or SAS token")."""
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = azurite.new_container()
    expired = generate_container_sas(
        "devstoreaccount1",
        container,
        account_key=azure_env["METAFLOW_AZURE_STORAGE_ACCOUNT_KEY"],
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(timezone.utc) - timedelta(hours=1),
    )
    monkeypatch.delenv("METAFLOW_AZURE_STORAGE_ACCOUNT_KEY")
    monkeypatch.setenv("AZURE_STORAGE_SAS_TOKEN", expired)
    with pytest.raises(StorageError) as info:
        _store(f"azure://{container}/conda_env").stat("x")
    message = " ".join(info.value.message.split())
    assert "was denied" in message and "the SAS token expired at " in message, message
    assert "sig=" not in message and expired not in message


@pytest.mark.parametrize("where", ["AZURE_STORAGE_SAS_TOKEN", "METAFLOW_AZURE_STORAGE_BLOB_SERVICE_ENDPOINT"])
def test_a_read_only_sas_token_is_named_as_such_when_writing(
    azurite: Any, azure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A SAS token with read and list permissions only reads the store, and was refused on a write (caching an
    environment) with the words of a wrong token ("Check the account key or SAS token")."""
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container = azurite.new_container()
    azurite.client().get_container_client(container).upload_blob("conda_env/x", b"1")
    read_only = generate_container_sas(
        "devstoreaccount1",
        container,
        account_key=azure_env["METAFLOW_AZURE_STORAGE_ACCOUNT_KEY"],
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    monkeypatch.delenv("METAFLOW_AZURE_STORAGE_ACCOUNT_KEY")
    if where == "AZURE_STORAGE_SAS_TOKEN":
        monkeypatch.setenv(where, read_only)
    else:
        monkeypatch.setenv(where, f"{azurite.endpoint}?{read_only}")
    setting = where if where == "AZURE_STORAGE_SAS_TOKEN" else f"{where} (its query string)"
    store = _store(f"azure://{container}/conda_env")
    assert store.stat("x") is not None and [o.key for o in store.list("")] == ["x"]
    for call, verb in ((lambda: store.put_bytes("y", b"2"), "write"), (lambda: store.delete("x"), "delete")):
        with pytest.raises(StorageError) as info:
            call()
        key = "y" if verb == "write" else "x"
        assert info.value.message == (
            f"Access to azure://{container}/conda_env/{key} was denied (AuthorizationPermissionMismatch): the SAS "
            f"token in {setting} can read and list but not {verb} (it lacks the {verb} permission: sp=rl). Set a "
            "SAS token with read, write, delete and list permissions (sp=rwdl) there, or an account key "
            "(METAFLOW_AZURE_STORAGE_ACCOUNT_KEY)."
        )
