"""Credentials never leak: every command runs against the basic-auth channel and index, with the password
given in the source URLs (as users do), through METAFLOW_CONDA_SRCS_AUTH_INFO, in a requirements file's
${VARIABLE} and in its --find-links URL, and a conda channel token; then
everything printed and everything written (store, caches, local record, config home) is searched for it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from envcore.testing.channel import Universe
from envcore.testing.fixtures import AuthEndpoint, TokenChannel

from ..conftest import env_ids
from .conftest import ReliabilityReport

RELIABILITY_CATEGORY = "secret scans"
Run = Callable[..., subprocess.CompletedProcess[str]]


def files_containing(root: Path, secret: bytes) -> list[str]:
    return [
        str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()
    ]


@pytest.mark.parametrize("how", ["url", "auth-info", "requirements-variable", "find-links", "conda-token"])
def test_no_secret_in_any_output_or_file(
    run: Run,
    world: dict[str, Path],
    auth_channel: AuthEndpoint,
    auth_wheel_index: AuthEndpoint,
    token_channel: TokenChannel,
    universe: Universe,
    reliability_report: ReliabilityReport,
    how: str,
) -> None:
    secret = token_channel.token if how == "conda-token" else auth_channel.password
    files: tuple[str, ...] = ()
    if how == "requirements-variable":  # pip's ${NAME} in a requirements file: the password is in no file
        host = urlsplit(auth_wheel_index.url)
        requirements = world["a"] / "requirements.txt"
        requirements.parent.mkdir(parents=True, exist_ok=True)
        requirements.write_text(
            f"--extra-index-url {host.scheme}://{auth_wheel_index.user}:${{ENVCORE_TEST_INDEX_PASSWORD}}@"
            f"{host.netloc}{host.path}\n"
        )
        files = ("-r", str(requirements))
        sources = {
            "METAFLOW_CONDA_CHANNELS": auth_channel.url,
            "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": auth_wheel_index.url,
            "ENVCORE_TEST_INDEX_PASSWORD": secret,
        }
    elif how == "find-links":  # the password only in a requirements file's --find-links URL
        host = urlsplit(auth_wheel_index.url)
        requirements = world["a"].parent / "find-links.txt"  # the user's file, outside the places scanned
        requirements.write_text(
            f"-f {host.scheme}://{auth_wheel_index.user}:{secret}@{host.netloc}{host.path}fx-extras/\n"
        )
        files = ("-r", str(requirements))
        sources = {
            "METAFLOW_CONDA_CHANNELS": auth_channel.url,  # the same host: the same credentials
            "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": auth_wheel_index.url,
        }
    elif (
        how == "conda-token"
    ):  # anaconda.org's /t/<TOKEN>/channel (the index without auth: one host, one credential)
        sources = {
            "METAFLOW_CONDA_CHANNELS": token_channel.url_with_token,
            "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": universe.simple_url,
        }
    elif how == "url":
        sources = {
            "METAFLOW_CONDA_CHANNELS": auth_channel.url_with_credentials,
            "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": auth_wheel_index.url_with_credentials,
        }
    else:
        host = urlsplit(auth_channel.url).hostname
        sources = {
            "METAFLOW_CONDA_CHANNELS": auth_channel.url,
            "METAFLOW_CONDA_DEFAULT_PYPI_SOURCE": auth_wheel_index.url,
            "METAFLOW_CONDA_SRCS_AUTH_INFO": json.dumps({host: [auth_channel.user, secret]}),
        }
    printed: list[str] = []

    def envcore(*args: str, machine: str = "a", check: bool = True) -> subprocess.CompletedProcess[str]:
        done = run(*args, machine=machine, check=check, **sources)
        printed.extend((done.stdout, done.stderr))
        return done

    out = envcore("resolve", *files, "--conda", "fx-app", "--pypi", "fx-extras", "--alias", "team/auth:v1")
    (ref,) = env_ids(out.stdout)
    envcore("resolve", *files, "--conda", "fx-app", "--pypi", "fx-extras", "--json")
    envcore("show", "team/auth:v1", "--json")
    envcore("show", ref)
    envcore("alias", ref, "team/auth:latest")
    envcore("get", "team/auth:v1", machine="b")
    envcore("create", "team/auth", "--name", "w", machine="b")
    envcore("config", "show")
    envcore("config", "show", "--json")
    failed = envcore("resolve", "--conda", "fx-nosuch", check=False)  # an error message too
    assert failed.returncode != 0
    leaks = [text for text in printed if secret in text]
    places = ("store", "a", "b")
    leaked_files = {place: files_containing(world[place], secret.encode()) for place in places}
    scanned = sum(1 for place in places for p in world[place].rglob("*") if p.is_file())
    reliability_report.record("secret scans", len(printed) + scanned)
    reliability_report.record("secret-scan hits", len(leaks) + sum(map(len, leaked_files.values())))
    assert leaks == [], leaks[0][:500] if leaks else ""
    for place, found in leaked_files.items():
        assert found == [], place
    python = world["b"] / "cache" / "envs" / "w" / "bin" / "python"
    assert subprocess.run([python, "-c", "import fx_app, fx_extras"], check=False).returncode == 0
