"""What the conformance kit tells a plugin author whose plugin is broken or not found: run as the author runs it
(pytest with ``-p envcore.testing.fixtures``, the plugin loaded by module path from the author's folder)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

STORE_PLUGIN = """
    from pathlib import Path

    from envcore import hookimpl
    from envcore.local_store import LocalStore
    from envcore.types import ObjectInfo, StoragePlugin


    class ShardStore(LocalStore):
        def __init__(self, root):
            super().__init__(Path(root.removeprefix("shard://")))

        @property
        def url(self):
            return f"shard://{self.root}"

        def stat(self, key):
            info = super().stat(key)
            return None if info is None else {WRONG}


    @hookimpl
    def envcore_storage():
        yield StoragePlugin(
            name="shard",
            factory=lambda root, config: ShardStore(root),
            root_setting="CONDA_SHARDROOT",
            summary="objects in a folder",
        )
"""

KIT = """
    import pytest

    from envcore.testing.conformance import ResolverConformance, StorageConformance
    from author_store import ShardStore


    class TestShardStore(StorageConformance):
        plugin_modules = ("author_store",)

        @pytest.fixture
        def store(self, tmp_path):
            return ShardStore(f"shard://{tmp_path / 'store'}")


    class TestNotLoaded(ResolverConformance):
        resolver_name = "toyrattler"


    class TestMisspelled(ResolverConformance):
        resolver_name = "ratler"
"""


def run_kit(folder: Path, wrong: str, *select: str) -> subprocess.CompletedProcess[str]:
    (folder / "author_store.py").write_text(textwrap.dedent(STORE_PLUGIN).replace("{WRONG}", wrong))
    return run_author_tests(folder, KIT, *select)


def run_author_tests(folder: Path, tests: str, *select: str) -> subprocess.CompletedProcess[str]:
    """The kit run by an author: ``tests`` as ``test_author.py`` in ``folder``, beside their plugin modules."""
    (folder / "test_author.py").write_text(textwrap.dedent(tests))
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAFLOW_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "envcore.testing.fixtures",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(folder),
            "-o",
            "addopts=",
            *select,
            "test_author.py",
        ],
        cwd=folder,
        env={**env, "PYTHONPATH": str(folder)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_store_loaded_by_module_path_passes_and_a_wrong_return_type_is_named(tmp_path: Path) -> None:
    good = run_kit(tmp_path, "info", "-k", "TestShardStore")
    # the default reopen_store finds the plugin by the url's scheme, loaded through plugin_modules
    assert " passed" in good.stdout and " failed" not in good.stdout, good.stdout[-3000:]
    bad = run_kit(tmp_path, "(info.key, info.size, info.version)", "-k", "test_bytes_round_trip")
    assert "1 failed" in bad.stdout, bad.stdout[-3000:]
    assert "ShardStore.stat('a/b/c.json') returned ('a/b/c.json', 8, " in bad.stdout
    assert "a tuple: it must return envcore.types.ObjectInfo(key=, size=, version=) or None." in bad.stdout


CARELESS_STORE = """
    import dataclasses
    import shutil

    from envcore.local_store import LocalStore


    class CarelessStore(LocalStore):
        def put_file(self, key, src):  # copies over the object in place: a reader can see half of it
            dest = self._path(key)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(src, "rb") as fin, open(dest, "wb") as fout:
                shutil.copyfileobj(fin, fout, 4096)
            return self.stat(key)

        def list(self, prefix):  # sizes nobody checked
            return (dataclasses.replace(info, size=0) for info in super().list(prefix))
"""


def test_a_store_whose_put_file_is_not_atomic_or_whose_listing_lies_fails_the_kit(tmp_path: Path) -> None:
    """Before, the kit checked atomicity through put_bytes only and listings by their keys only."""
    (tmp_path / "careless_store.py").write_text(textwrap.dedent(CARELESS_STORE))
    tests = """
        import pytest

        from envcore.testing.conformance import StorageConformance
        from careless_store import CarelessStore


        class TestCareless(StorageConformance):
            @pytest.fixture
            def store(self, tmp_path):
                return CarelessStore(tmp_path / "store")
    """
    out = run_author_tests(tmp_path, tests, "-k", "partial_file_writes or recursive_sorted")
    assert "2 failed" in out.stdout, out.stdout[-3000:]
    assert "readers saw" in out.stdout and "partial or mixed objects" in out.stdout
    assert "list('p/') gave ObjectInfo(key='p/a', size=0, " in out.stdout


LISTING_STORES = """
    from envcore.local_store import LocalStore


    class UnsortedStore(LocalStore):
        def list(self, prefix):
            return reversed(list(super().list(prefix)))


    class FolderStore(LocalStore):  # reads a prefix as a folder: 'd' is 'd/'
        def list(self, prefix):
            folder = prefix if prefix.endswith("/") else prefix + "/"
            return (info for info in super().list(prefix) if info.key.startswith(folder))
"""


def test_a_wrong_listing_fails_naming_list_not_delete(tmp_path: Path) -> None:
    """Before, the delete test listed what was left and blamed delete for an unsorted or folder-wise listing."""
    (tmp_path / "listing_stores.py").write_text(textwrap.dedent(LISTING_STORES))
    tests = """
        import pytest

        from envcore.testing.conformance import StorageConformance
        from listing_stores import FolderStore, UnsortedStore


        class TestUnsorted(StorageConformance):
            @pytest.fixture
            def store(self, tmp_path):
                return UnsortedStore(tmp_path / "store")


        class TestFolder(StorageConformance):
            @pytest.fixture
            def store(self, tmp_path):
                return FolderStore(tmp_path / "store")
    """
    out = run_author_tests(tmp_path, tests, "-k", "delete_removes or recursive_sorted")
    assert "4 failed" in out.stdout, out.stdout[-3000:]
    said = " ".join(out.stdout.split())
    assert "must remove that key and nothing else" not in said, said[-3000:]
    assert (
        "UnsortedStore.list('d') after delete('d/x') gave ['dx', 'd/xy', 'd/x.json', 'd/w'], expected "
        "['d/w', 'd/x.json', 'd/xy', 'dx']: not sorted (keys are listed in the order of their strings)."
        in said
    )
    assert (
        "FolderStore.list('d') after delete('d/x') gave ['d/w', 'd/x.json', 'd/xy'], expected "
        "['d/w', 'd/x.json', 'd/xy', 'dx']: 'd' is a string prefix, not a folder: it also matches ['dx']."
        in said
    )
    assert (
        "FolderStore.list('p/b') gave ['p/b/1', 'p/b/2'], expected ['p/b/1', 'p/b/2', 'p/bc']: 'p/b' is a "
        "string prefix, not a folder: it also matches ['p/bc']." in said
    )
    assert "UnsortedStore.list('p/') gave ['p/bc', 'p/b/2', 'p/b/1', 'p/a'], expected" in said


def test_a_resolver_that_is_not_registered_is_explained(tmp_path: Path) -> None:
    out = run_kit(tmp_path, "info", "-k", "TestNotLoaded and test_exact_pins")
    assert "1 error" in out.stdout or "1 failed" in out.stdout, out.stdout[-3000:]
    assert "no resolver named 'toyrattler' is registered: did you mean 'rattler'? (registered: " in out.stdout
    assert "rattler-uv" in out.stdout
    assert '`plugin_modules = ("your_package.plugin",)` on TestNotLoaded' in out.stdout


def test_a_misspelled_resolver_name_gets_a_guess(tmp_path: Path) -> None:
    out = run_kit(tmp_path, "info", "-k", "TestMisspelled and test_exact_pins")
    assert "1 error" in out.stdout or "1 failed" in out.stdout, out.stdout[-3000:]
    assert "no resolver named 'ratler' is registered: did you mean 'rattler'? (registered: " in out.stdout


FORGETFUL_RESOLVER = """
    import time

    from envcore import hookimpl
    from envcore.types import EnvType, ResolverPlugin


    class Forgetful:
        \"\"\"The rattler resolver, but keeping the request of a call on itself.\"\"\"

        def __init__(self, config):
            from envcore_rattler.resolver import RattlerResolver

            self.inner = RattlerResolver(config)

        def check(self):
            self.inner.check()

        def version(self):
            return self.inner.version()

        def resolve(self, request):
            self.request = request
            time.sleep(0.3)  # another thread's call replaces it meanwhile
            return self.inner.resolve(self.request)


    @hookimpl
    def envcore_resolvers():
        yield ResolverPlugin(
            name="forgetful",
            env_types=frozenset({EnvType.CONDA_ONLY}),
            factory=Forgetful,
            summary="rattler, keeping per-call state on the resolver",
        )
"""


def test_a_resolver_that_keeps_per_call_state_fails_the_thread_check(tmp_path: Path) -> None:
    (tmp_path / "author_resolver.py").write_text(textwrap.dedent(FORGETFUL_RESOLVER))
    tests = """
        from envcore.testing.conformance import ResolverConformance


        class TestForgetful(ResolverConformance):
            resolver_name = "forgetful"
            plugin_modules = ("author_resolver",)
    """
    out = run_author_tests(tmp_path, tests, "-k", "test_calls_from_threads or test_same_request")
    assert "1 failed, 1 passed" in out.stdout, out.stdout[-3000:]
    assert "calls made at once from threads must answer as the same calls one by one" in out.stdout


def test_the_kit_without_pytest_says_what_to_install() -> None:
    """Before: a bare "No module named 'pytest'"."""
    code = "import sys; sys.modules['pytest'] = None; import envcore.testing.conformance"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0 and "install envcore with its testing extra (envcore[testing])" in done.stderr


def test_a_format_kit_without_its_extension_fails_instead_of_skipping_the_hostile_archives(
    tmp_path: Path,
) -> None:
    """Before, every hostile-archive case was skipped (' archives cannot express traversal') and the kit passed."""
    tests = """
        import pytest

        from envcore.formats.wheel import WheelFormat
        from envcore.testing.conformance import PackageFormatConformance


        class TestForgotten(PackageFormatConformance):
            @pytest.fixture
            def package_format(self):
                return WheelFormat()
    """
    done = run_author_tests(tmp_path, tests, "-k", "hostile")
    assert done.returncode != 0 and " passed" not in done.stdout and "skipped" not in done.stdout, (
        done.stdout[-3000:]
    )
    assert "TestForgotten sets no `extension`: set it to the format's (extension = '.whl')" in done.stdout
