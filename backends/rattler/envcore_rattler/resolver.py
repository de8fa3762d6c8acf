"""Solve conda requirements with py-rattler, for any target subdir, with no external binary.

A gateway keeps the repodata it has read for its whole life, so solving the same specs again with it gives
the same answer: solutions are kept beside it (:class:`Solutions`). A flow's PyPI steps, which all need the
same conda python, then solve it once.

py-rattler and asyncio (~60 ms to import) are imported when the first solve starts, not with this module: a
composition starts its PyPI side beside the conda side before that (:mod:`envcore.compose`), so the import
overlaps uv's run instead of preceding it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Hashable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from envcore.config import Config, redact_url
from envcore.errors import EnvcoreError, ResolutionError
from envcore.platforms import DEFAULT_OSX
from envcore.specs import match_spec
from envcore.types import (
    CONDA,
    CONDA_TOKEN_USER,
    NPCONDA,
    SYS,
    LockedPackage,
    PackageFile,
    PackageKind,
    ResolveRequest,
)

if TYPE_CHECKING:
    import rattler

# Virtual packages implied by the target platform itself; __glibc and __cuda come from the request.
PLATFORM_VIRTUAL_PACKAGES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "linux": (("__unix", "0", "0"), ("__linux", "5.10", "0")),
    "osx": (("__unix", "0", "0"),),
    "win": (("__win", "0", "0"),),
}
ARCHSPEC = {"64": "x86_64", "aarch64": "aarch64", "arm64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x"}


@functools.cache
def _version() -> str:
    import rattler

    version = getattr(rattler, "__version__", None)  # the distribution's metadata costs a scan of sys.path
    if isinstance(version, str):
        return version
    import importlib.metadata

    return importlib.metadata.version("py-rattler")


def virtual_packages(request: ResolveRequest) -> list[rattler.GenericVirtualPackage]:
    return list(_virtual_packages(request.arch, _sys_specs(request)))


def _sys_specs(request: ResolveRequest) -> tuple[tuple[str, str], ...]:
    return tuple((r.name, r.spec) for r in request.of(SYS))


@functools.lru_cache(maxsize=64)
def _virtual_packages(
    arch: str, sys_specs: tuple[tuple[str, str], ...]
) -> tuple[rattler.GenericVirtualPackage, ...]:
    import rattler

    family, _, machine = arch.partition("-")
    found = [*PLATFORM_VIRTUAL_PACKAGES.get(family, ()), ("__archspec", "1", ARCHSPEC.get(machine, machine))]
    if arch in DEFAULT_OSX:
        found.append(("__osx", DEFAULT_OSX[arch], "0"))
    for name, spec in sys_specs:
        version, _, build = spec.partition("=")
        found = [f for f in found if f[0] != name] + [(name, version, build or "0")]
    return tuple(
        rattler.GenericVirtualPackage(rattler.PackageName(n), rattler.Version(v), rattler.BuildString(b))
        for n, v, b in found
    )


def _clean(url: str) -> str:
    """``url`` without credentials; a URL without ``@`` has none (``redact_url`` parses it: ~7 µs a package)."""
    return redact_url(url) if "@" in url else url


def locked_package(record: rattler.RepoDataRecord) -> LockedPackage:
    file_name = record.file_name
    ext = ".tar.bz2" if file_name.endswith(".tar.bz2") else os.path.splitext(file_name)[1]
    channel = record.channel
    return LockedPackage(
        kind=PackageKind.CONDA,
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        filename=file_name[: -len(ext)],
        files=(
            PackageFile(
                url_format=ext,
                url=_clean(str(record.url)),
                sha256=record.sha256.hex() if record.sha256 else "",
                md5=record.md5.hex() if record.md5 else None,
                size=record.size,
            ),
        ),
        subdir=str(record.subdir),
        channel=_clean(str(channel)) if channel else None,
        depends=tuple(record.depends),
    )


def repodata_record(pkg: LockedPackage) -> rattler.RepoDataRecord:
    """A conda package as an environment's description records it, as a record the solver takes (with the
    depends, hashes and size the description keeps; no constrains, which it does not)."""
    import rattler

    file = pkg.files[0]  # the format it was resolved in
    build_number = re.search(r"(?:^|_)(\d+)$", pkg.build)
    record = rattler.PackageRecord(
        name=pkg.name,
        version=pkg.version,
        build=rattler.BuildString(pkg.build),
        build_number=int(build_number[1]) if build_number else 0,
        subdir=pkg.subdir or "noarch",
        depends=list(pkg.depends),
        sha256=bytes.fromhex(file.sha256) if file.sha256 else None,
        md5=bytes.fromhex(file.md5) if file.md5 else None,
        size=file.size,
    )
    return rattler.RepoDataRecord(
        record, file_name=f"{pkg.filename}{file.url_format}", url=file.url, channel=pkg.channel or ""
    )


def base_conda_packages(request: ResolveRequest) -> tuple[LockedPackage, ...]:
    """The conda packages of the environment ``request`` extends (virtual packages aside), if any."""
    if request.base is None:
        return ()
    return tuple(
        p for p in request.base.packages if p.kind is PackageKind.CONDA and not p.name.startswith("__")
    )


_OPTIONS = r"^(?P<subject>.*?)(?P<which>,? which)? can be installed with any of the following options$"
_NO_OPTION = r"^(?P<subject>.*?)(?P<which>,? which)? cannot be installed because there are no viable options$"
_REQUIRES = r"^(?P<subject>.*) would require$"
_CONFLICTS = r"^(?P<subject>.*), which conflicts (?P<rest>.*)$"
_TREE = " │└─├"
COALESCED = "a coalesced request failed"  # the gateway's error for a waiter on another caller's failed fetch
COALESCED_WAIT = 1.0  # seconds a waiter waits for the failing fetch's cause before fetching again itself
COALESCED_RETRIES = 2
LOCKED_KEPT = 50_000  # converted packages kept per resolver (a few MB)
KEPT = 10_000  # parsed specs, channels kept per resolver

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
A = TypeVar("A")


def _kept(kept: dict[K, V], key: K, bound: int, make: Callable[[A], V], argument: A) -> V:
    """``kept[key]``, made by ``make(argument)`` the first time; ``kept`` emptied when it holds ``bound`` (a
    long-lived process's resolver does not grow without end)."""
    found = kept.get(key)
    if found is None:
        if len(kept) >= bound:
            kept.clear()
        found = kept[key] = make(argument)
    return found


class _Clause:
    """One line of rattler's explanation tree and the lines under it (a line's text grows with its 'Caused by:')."""

    __slots__ = ("children", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.children: list[_Clause] = []


def _render(clause: _Clause) -> str:
    """One clause of rattler's explanation tree as a phrase (its children folded in)."""
    text = clause.text.rstrip(" .:").replace("the versions reported above", "the versions named before")
    parts = [_render(c) for c in clause.children]
    if not parts:
        return text
    if match := re.match(_OPTIONS, text):  # a request its options name again: they say it all
        return f"{match['subject']}, met by {' or '.join(parts)}" if match["which"] else " or ".join(parts)
    if match := re.match(_NO_OPTION, text):
        verb = ", which cannot" if match["which"] else " cannot"
        return f"{match['subject']}{verb} be installed because {_reasons(clause.children)}"
    if match := re.match(_REQUIRES, text):
        return f"{match['subject']} would require {' and '.join(parts)}"
    if text.lower().endswith("the following packages are incompatible"):
        return f"{text}: {'; '.join(parts)}"
    return f"{text} ({', '.join(parts)})"


def _reasons(options: list[_Clause]) -> str:
    """Why none of ``options`` fits; options that conflict alike are named together."""
    conflicting: dict[str, list[str]] = {}
    reasons: list[str] = []
    for option in options:
        match = None if option.children else re.match(_CONFLICTS, option.text.rstrip(" .:"))
        if match is None:
            reasons.append(_render(option))
        else:
            conflicting.setdefault(match["rest"], []).append(match["subject"])
    for rest, subjects in conflicting.items():
        rest = rest.replace("the versions reported above", "the versions named before")
        verb = "conflicts" if len(subjects) == 1 else "conflict"
        reasons.append(f"{' and '.join(subjects)} {verb} {rest}")
    return " and ".join(reasons)


def solver_message(exc: Exception) -> str:
    """rattler's error as one phrase, without a final period: its explanation tree (a solver conflict) folded
    into clauses, its chain of causes (a channel that cannot be read) joined by colons."""
    roots: list[_Clause] = []
    stack: list[tuple[int, _Clause]] = []
    for line in str(exc).splitlines():
        text = line.lstrip(_TREE).strip()
        if not text:
            continue
        if text.startswith("Caused by:") and roots:
            roots[-1].text = f"{roots[-1].text.rstrip(' .:')}: {text.removeprefix('Caused by:').strip()}"
            continue
        depth = len(line) - len(line.lstrip(_TREE))
        clause = _Clause(text.removeprefix("Cannot solve the request because of:").strip())
        while stack and stack[-1][0] >= depth:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(clause)
        stack.append((depth, clause))
    message = "; ".join(_render(root) for root in roots).rstrip(" .;:")
    if message[:1].isupper() and message[1:2].islower():  # a sentence's first word, not a name
        message = message[0].lower() + message[1:]
    return message


def _client(credentials: Mapping[str, tuple[str, str]]) -> rattler.Client:
    """A client that retries transient failures (5xx, resets) with backoff and, with credentials, authenticates
    to the request's hosts (a conda token goes back into the path of every request to its host). rattler reads
    credentials from the auth file named by ``RATTLER_AUTH_FILE`` when the client is built; the file is private
    and removed at once."""
    from rattler.networking import AuthenticationMiddleware, Client, RetryMiddleware

    if not credentials:
        return Client([RetryMiddleware()])
    from envcore.tools import scratch_folder  # only for credentials

    with scratch_folder("auth") as tmp:
        path = Path(tmp) / "auth.json"
        path.touch(mode=0o600)
        auth = {
            host: {"CondaToken": pw}
            if user == CONDA_TOKEN_USER
            else {"BasicHTTP": {"username": user, "password": pw}}
            for host, (user, pw) in credentials.items()
        }
        path.write_text(json.dumps(auth))
        previous = os.environ.get("RATTLER_AUTH_FILE")
        os.environ["RATTLER_AUTH_FILE"] = str(path)
        try:
            return Client([RetryMiddleware(), AuthenticationMiddleware()])
        finally:
            if previous is None:
                os.environ.pop("RATTLER_AUTH_FILE", None)
            else:
                os.environ["RATTLER_AUTH_FILE"] = previous


class Solutions:
    """Solutions by their inputs, computed once even when threads ask for the same one at the same time; a
    failure is not kept (the next call solves again). The oldest are dropped beyond ``size``."""

    def __init__(self, size: int = 128) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._done: OrderedDict[Hashable, concurrent.futures.Future[tuple[LockedPackage, ...]]] = (
            OrderedDict()
        )

    def get(self, key: Hashable, solve: Callable[[], Sequence[LockedPackage]]) -> tuple[LockedPackage, ...]:
        with self._lock:
            future = self._done.get(key)
            mine = future is None
            if future is None:
                future = self._done[key] = concurrent.futures.Future()
                while len(self._done) > self.size:
                    self._done.popitem(last=False)
            else:
                self._done.move_to_end(key)
        if not mine:
            return future.result()
        try:
            future.set_result(tuple(solve()))
        except BaseException as exc:
            with self._lock:
                if self._done.get(key) is future:
                    del self._done[key]
            future.set_exception(exc)
            raise
        return future.result()

    def done(self, key: Hashable) -> tuple[LockedPackage, ...] | None:
        """The solution kept for ``key``, if one is complete."""
        with self._lock:
            future = self._done.get(key)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def clear(self) -> None:
        with self._lock:
            self._done.clear()


class _Pending:
    """One distinct problem of a batch: where its solution is kept, its key there, the solve, and the requests
    it answers (a plain class: a record's checked ``__init__`` costs ~8 us, once per environment of a batch)."""

    __slots__ = ("indexes", "key", "solutions", "solve")

    def __init__(
        self,
        solutions: Solutions,
        key: Hashable,
        solve: Callable[[], Coroutine[Any, Any, list[LockedPackage]]],
    ) -> None:
        self.solutions = solutions
        self.key = key
        self.solve = solve
        self.indexes: list[int] = []


class RattlerResolver:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.cache_dir = config.cache_dir() / "rattler" / "repodata"
        # one gateway per set of credentials: repodata fetched for one environment serves the next; its
        # solutions are valid as long as it lives
        self._gateways: dict[frozenset[tuple[str, str, str]], tuple[rattler.Gateway, Solutions]] = {}
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}  # channel -> URL: a name goes through the alias (.condarc reads)
        self._failures: dict[str, tuple[float, str]] = {}  # channel URL -> (when, why) its last read failed
        self._failures_changed = threading.Condition()
        # packages as envcore records them, by (URL, sha256): the environments of a flow share most of theirs
        # (converting one costs ~11 us, finding it ~0.5 us)
        self._locked: dict[tuple[str, bytes | None], LockedPackage] = {}
        # parsed match specs by text and channels by URL: a flow's environments share most of them (parsing a
        # spec costs ~18 us, a channel ~14 us); neither object changes once made
        self._specs: dict[str, rattler.MatchSpec] = {}
        self._channels: dict[str, rattler.Channel] = {}

    def _locked_package(self, record: rattler.RepoDataRecord) -> LockedPackage:
        return _kept(self._locked, (record.url, record.sha256), LOCKED_KEPT, locked_package, record)

    def _spec(self, text: str) -> rattler.MatchSpec:
        import rattler

        return _kept(self._specs, text, KEPT, rattler.MatchSpec, text)

    def _channel(self, url: str) -> rattler.Channel:
        import rattler

        return _kept(self._channels, url, KEPT, rattler.Channel, url)

    def channel_url(self, channel: str) -> str:
        url = self._urls.get(channel)
        if url is None:
            url = self._urls[channel] = self.config.channel_url(channel)
        return url

    def gateway(self, credentials: Mapping[str, tuple[str, str]]) -> tuple[rattler.Gateway, Solutions]:
        """A gateway (retrying, authenticating: :func:`_client`) per set of credentials, with its solutions."""
        import rattler

        key = frozenset((host, user, pw) for host, (user, pw) in credentials.items())
        with self._lock:
            if key not in self._gateways:
                gateway = rattler.Gateway(cache_dir=self.cache_dir, client=_client(credentials))
                self._gateways[key] = (gateway, Solutions())
            return self._gateways[key]

    def _failed(self, channels: Sequence[str], reason: str) -> None:
        """Remember why reading ``channels`` failed, for the solves that waited on the same fetch."""
        with self._failures_changed:
            now = time.monotonic()
            self._failures.update((c, (now, reason)) for c in channels)
            self._failures_changed.notify_all()

    def _failure(self, channels: Sequence[str], *, since: float) -> str | None:
        """Why reading one of ``channels`` failed after ``since`` (the solve that fetched it reports it at about
        the same time: waited for a moment)."""
        deadline = time.monotonic() + COALESCED_WAIT
        with self._failures_changed:
            while True:
                found = [f for c in channels if (f := self._failures.get(c)) and f[0] >= since]
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return max(found)[1] if found else None
                self._failures_changed.wait(remaining)

    def forget_solutions(self) -> None:
        """Solve again on the next call, from the repodata already read (the bench times the solver so)."""
        with self._lock:
            for _, solutions in self._gateways.values():
                solutions.clear()

    def refresh(self) -> None:
        """Read the channels again on the next solve (a long-lived process: a notebook)."""
        with self._lock:
            self._gateways.clear()

    def check(self) -> None:
        return None  # py-rattler is a dependency of this distribution: nothing external to find

    def version(self) -> str:
        return _version()

    def resolve(self, request: ResolveRequest) -> Sequence[LockedPackage]:
        from envcore_rattler.loop import run_sync

        solutions, key, solve = self._problem(request)
        return solutions.get(key, lambda: run_sync(solve()))

    def resolve_batch(
        self, requests: Sequence[ResolveRequest]
    ) -> list[Sequence[LockedPackage] | EnvcoreError]:
        """Every request solved at once on one event loop (a flow's environments): the solves overlap in
        rattler's threads, without a Python thread each. A failure takes its request's place."""
        import asyncio

        from envcore_rattler.loop import run_sync

        answers: list[Sequence[LockedPackage] | EnvcoreError] = []
        pending: dict[tuple[int, Hashable], _Pending] = {}  # one solve per distinct problem
        for index, request in enumerate(requests):
            try:
                solutions, key, solve = self._problem(request)
            except EnvcoreError as exc:
                answers.append(exc)
                continue
            known = solutions.done(key)
            answers.append(known if known is not None else ())
            if known is None:
                problem = pending.get((id(solutions), key))
                if problem is None:
                    problem = pending[(id(solutions), key)] = _Pending(solutions, key, solve)
                problem.indexes.append(index)

        async def solved(problem: _Pending) -> tuple[LockedPackage, ...] | EnvcoreError:
            try:
                packages = tuple(await problem.solve())
            except EnvcoreError as exc:
                return exc
            return problem.solutions.get(problem.key, lambda: packages)  # kept for the next call

        async def all_solved() -> list[tuple[LockedPackage, ...] | EnvcoreError]:
            return await asyncio.gather(*(solved(p) for p in pending.values()))

        for problem, answer in zip(pending.values(), run_sync(all_solved()), strict=True):
            for index in problem.indexes:
                answers[index] = answer
        return answers

    def _problem(
        self, request: ResolveRequest
    ) -> tuple[Solutions, Hashable, Callable[[], Coroutine[Any, Any, list[LockedPackage]]]]:
        """What solving ``request`` takes: its gateway's solutions, the key of its solution there, and the
        solve itself (a coroutine function)."""
        import rattler
        import rattler.exceptions

        channels = [self.channel_url(c) for c in request.sources.get(CONDA, ())]
        texts, specs = [], []
        conda_reqs = request.of(CONDA, NPCONDA)
        for req in conda_reqs:
            url = self.channel_url(req.channel) if req.channel else None
            if url and url not in channels:
                channels.append(url)
            text = match_spec(req, url)
            texts.append(text)
            try:  # parsed here, leniently as conda reads specs (solve() would parse strings strictly)
                specs.append(self._spec(text))
            except rattler.exceptions.InvalidMatchSpecError as exc:
                raise ResolutionError(
                    f"The conda requirement {req.name} {req.spec!r} is not a valid conda match spec "
                    f"({' '.join(str(exc).split())}). Write a version constraint such as 1.2.*, >=1.2,<2 or "
                    "1.2.3, optionally followed by a build string."
                ) from None
        if not channels:
            raise ResolutionError(
                "No conda channel is configured. Set METAFLOW_CONDA_CHANNELS (e.g. conda-forge) or add channels to "
                "your requirements."
            )
        explicit = any(req.channel for req in conda_reqs) or len(channels) > 1
        priority = rattler.ChannelPriority.Disabled if explicit else rattler.ChannelPriority.Strict
        gateway, solutions = self.gateway(request.credentials)
        base = base_conda_packages(request)
        sys_specs = _sys_specs(request)
        key = (
            tuple(channels),
            tuple(texts),
            request.arch,
            sys_specs,
            explicit,
            tuple((p.filename, p.files[0].sha256) for p in base),
        )
        virtual = list(_virtual_packages(request.arch, sys_specs))
        return (
            solutions,
            key,
            lambda: self._solve(channels, specs, gateway, request.arch, virtual, priority, base),
        )

    async def _solve(
        self,
        channels: list[str],
        specs: list[rattler.MatchSpec],
        gateway: rattler.Gateway,
        arch: str,
        virtual: list[rattler.GenericVirtualPackage],
        priority: rattler.ChannelPriority,
        base: Sequence[LockedPackage] = (),
    ) -> list[LockedPackage]:
        """``base``: the conda packages of the environment being extended; those the channels no longer have
        (removed since) are given to the solver as records it may keep (rattler's locked packages), so that the
        extension keeps them as the base has them (its files are in the store)."""
        import asyncio

        import rattler
        import rattler.exceptions

        started = time.monotonic()
        for attempt in range(COALESCED_RETRIES + 1):
            try:
                gone = await _gone_from(channels, base, gateway, arch) if base else []
                records = await rattler.solve(
                    sources=[self._channel(c) for c in channels],
                    specs=specs,
                    gateway=gateway,
                    platforms=[arch, "noarch"],  # type: ignore[list-item]  # a subdir name
                    locked_packages=gone or None,
                    virtual_packages=virtual,
                    channel_priority=priority,
                )
                break
            except rattler.exceptions.SolverError as exc:
                from envcore.resolve import unmet_system_feature

                reason = solver_message(exc)
                fix = unmet_system_feature(reason, arch) or (
                    "Change the constraint named above, or check that the package exists in the channels "
                    f"({', '.join(redact_url(c) for c in channels)})."
                )
                raise ResolutionError(
                    f"The conda requirements cannot be resolved for {arch}: {reason}. {fix}"
                ) from None
            except (rattler.exceptions.GatewayError, rattler.exceptions.FetchRepoDataError) as exc:
                reason = solver_message(exc)
                if COALESCED not in reason:
                    self._failed(channels, reason)
                else:  # another solve's fetch of the same repodata failed: its cause, or fetch again
                    found = await asyncio.to_thread(self._failure, channels, since=started)
                    if found is None and attempt < COALESCED_RETRIES:
                        continue
                    reason = found or reason
                where = ", ".join(redact_url(c) for c in channels)
                fix = (
                    "Check the channel's credentials: user:password@ in its URL, METAFLOW_CONDA_SRCS_AUTH_INFO, "
                    "an access token (/t/<TOKEN>/) or the keyring (METAFLOW_ENVCORE_KEYRING=auto)."
                    if re.search(r"\b40[13]\b", reason)
                    else "Check the channel names, METAFLOW_CONDA_CHANNEL_ALIAS and your network."
                )
                raise ResolutionError(
                    f"Could not read the conda channels ({where}): {reason}. {fix}"
                ) from None
        return self._in_order(records)

    def _in_order(self, records: list[rattler.RepoDataRecord]) -> list[LockedPackage]:
        """The solution's packages as envcore records them, in rattler's topological order. The sorted records
        are new objects: matched to the packages by sha256 (~0.5 us a record) when every record has a distinct
        one, else by name (~7 us: a solution has one record per name)."""
        import rattler

        packages = [self._locked_package(r) for r in records]
        ordered = rattler.PackageRecord.sort_topologically(records)  # type: ignore[arg-type]  # subclass
        hashes = [r.sha256 for r in records]
        if None not in hashes and len(set(hashes)) == len(hashes):
            by_hash = dict(zip(hashes, packages, strict=True))
            return [by_hash[r.sha256] for r in ordered]  # (not None: checked above)
        by_name = {p.name: p for p in packages}
        return [by_name[r.name.normalized] for r in ordered]


async def _gone_from(
    channels: list[str], packages: Sequence[LockedPackage], gateway: rattler.Gateway, arch: str
) -> list[rattler.RepoDataRecord]:
    """``packages`` that ``channels`` no longer have (by name, version and build), as solver records."""
    import rattler
    import rattler.exceptions

    specs: list[rattler.MatchSpec | rattler.PackageName] = []
    for pkg in packages:
        try:  # the very record (fewer records to convert than all of the name's)
            specs.append(rattler.MatchSpec(f"{pkg.name} =={pkg.version} {pkg.build}".strip()))
        except (
            rattler.exceptions.InvalidMatchSpecError
        ):  # (a description the original wrote, from a file name)
            specs.append(rattler.PackageName(pkg.name))
    found = await gateway.query(
        channels,
        [arch, "noarch"],  # type: ignore[list-item]  # a subdir name
        specs,
        recursive=False,
    )
    have = {(r.name.normalized, str(r.version), str(r.build)) for records in found for r in records}
    return [repodata_record(p) for p in packages if (p.name.lower(), p.version, p.build) not in have]
