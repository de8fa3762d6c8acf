"""Private channels and indexes with credentials in the system keyring (``keyring`` installed, a backend
configured): found without being written anywhere, and ``METAFLOW_ENVCORE_KEYRING=off`` turns it off."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from envcore.testing.fixtures import AuthEndpoint

from ..conftest import env_ids

Run = Callable[..., subprocess.CompletedProcess[str]]

# A real keyring backend (keyring's plugin interface), reading a JSON file: {service: [user, password]}.
BACKEND = """
import json, os
import keyring.backend, keyring.credentials

class FileKeyring(keyring.backend.KeyringBackend):
    priority = 10

    def _entry(self, service):
        with open(os.environ["ENVCORE_TEST_KEYRING_FILE"]) as fh:
            return json.load(fh).get(service)

    def get_credential(self, service, username):
        entry = self._entry(service)
        return keyring.credentials.SimpleCredential(*entry) if entry else None

    def get_password(self, service, username):
        entry = self._entry(service)
        return entry[1] if entry and entry[0] == username else None

    def set_password(self, service, username, password):
        raise keyring.errors.PasswordSetError("read-only test keyring")

    def delete_password(self, service, username):
        raise keyring.errors.PasswordDeleteError("read-only test keyring")
"""


def test_credentials_from_the_keyring_are_used_and_never_written(
    run: Run,
    world: dict[str, Path],
    tmp_path: Path,
    auth_channel: AuthEndpoint,
    auth_wheel_index: AuthEndpoint,
) -> None:
    (tmp_path / "kr").mkdir()
    (tmp_path / "kr" / "envcore_test_keyring.py").write_text(BACKEND)
    host = auth_channel.url.split("//")[1].split("/")[0].split(":")[0]
    entries = tmp_path / "keyring.json"
    entries.write_text(
        json.dumps({host: [auth_channel.user, auth_channel.password]})
    )  # by host, as pip looks up
    env = {
        "METAFLOW_CONDA_CHANNELS": auth_channel.url,  # no credentials anywhere but the keyring
        "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": auth_wheel_index.url,
        "PYTHON_KEYRING_BACKEND": "envcore_test_keyring.FileKeyring",
        "PYTHONPATH": str(tmp_path / "kr"),
        "ENVCORE_TEST_KEYRING_FILE": str(entries),
    }
    refused = run(
        "resolve",
        "--conda",
        "fx-app",
        "--pypi",
        "fx-extras",
        check=False,
        **env,
        METAFLOW_ENVCORE_KEYRING="off",
    )
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    out = run("resolve", "--conda", "fx-app", "--pypi", "fx-extras", **env)
    (ref,) = env_ids(out.stdout)
    run("create", ref, "--name", "k", machine="b", **env)
    python = world["b"] / "cache" / "envs" / "k" / "bin" / "python"
    subprocess.run([python, "-c", "import fx_app, fx_extras"], check=True)
    secret = auth_channel.password.encode()
    for place in ("store", "a", "b"):
        leaked = [
            p
            for p in world[place].rglob("*")
            if p.is_file() and not p.is_symlink() and secret in p.read_bytes()
        ]
        assert leaked == [], leaked
    assert auth_channel.password not in out.stdout + out.stderr
