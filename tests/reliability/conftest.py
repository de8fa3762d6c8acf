"""The reliability suite's report: tests record what they exercised through the ``reliability_report``
fixture (``reliability_report.record("fault runs")``), and the session ends with one table of counts and
failures. A green run has no failed test and a zero in every row marked "must be 0".

A test counts (passed, failed, known gap) under the first category it recorded, else under its module's
``RELIABILITY_CATEGORY``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

# (category, must be zero): the rows of the table, in this order; other recorded categories follow.
ROWS: tuple[tuple[str, bool], ...] = (
    ("kills survived", False),
    ("racing processes", False),
    ("integrity cases", False),
    ("hostile archives", False),
    ("secret scans", False),
    ("secret-scan hits", True),
    ("bad inputs", False),
    ("fault runs", False),
    ("faults injected", False),
    ("environments under load", False),
)


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)
    passed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    gaps: Counter[str] = field(default_factory=Counter)  # expected failures (pytest.xfail): known gaps
    by_test: dict[str, list[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


STATS = pytest.StashKey[Stats]()


def _stats(config: pytest.Config) -> Stats:
    if STATS not in config.stash:
        config.stash[STATS] = Stats()
    return config.stash[STATS]


class ReliabilityReport:
    """One test's handle on the session report."""

    def __init__(self, stats: Stats, nodeid: str) -> None:
        self._stats, self._nodeid = stats, nodeid

    def record(self, category: str, n: int = 1) -> None:
        """Add ``n`` to ``category`` (``n=0`` only attributes this test to the category)."""
        self._stats.counts[category] += n
        seen = self._stats.by_test.setdefault(self._nodeid, [])
        if category not in seen:
            seen.append(category)

    def note(self, text: str) -> None:
        """A measured figure, printed under the table."""
        self._stats.notes.append(text)


@pytest.fixture
def reliability_report(request: pytest.FixtureRequest) -> ReliabilityReport:
    return ReliabilityReport(_stats(request.config), request.node.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    stats = _stats(item.config)
    module = getattr(item, "module", None)
    recorded = stats.by_test.get(item.nodeid)
    category = (
        recorded[0] if recorded else getattr(module, "RELIABILITY_CATEGORY", item.nodeid.split("::")[0])
    )
    if report.failed:
        stats.failed[category] += 1
        stats.failures.append(f"{item.nodeid} ({report.when})")
    elif report.when == "call" and hasattr(report, "wasxfail"):
        stats.gaps[category] += 1
    elif report.when == "call" and report.passed:
        stats.passed[category] += 1
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    stats = config.stash.get(STATS, None)
    if stats is None or not (stats.passed or stats.failed or stats.gaps):
        return
    seen = set(stats.counts) | set(stats.passed) | set(stats.failed) | set(stats.gaps)
    rows = [*ROWS, *((c, False) for c in sorted(seen - {r for r, _ in ROWS}))]
    write = terminalreporter.write_line
    terminalreporter.section("reliability report")
    write(f"{'category':<26}{'count':>8}{'tests ok':>10}{'failed':>8}{'known gaps':>12}")
    bad = []
    for category, must_be_zero in rows:
        count, failed = stats.counts[category], stats.failed[category]
        if must_be_zero and count:
            bad.append(f"{category} = {count}")
        if failed:
            bad.append(f"{category}: {failed} failed")
        note = "  (must be 0)" if must_be_zero else ""
        write(
            f"{category:<26}{count:>8}{stats.passed[category]:>10}{failed:>8}{stats.gaps[category]:>12}{note}"
        )
    for text in stats.notes:
        write(f"  {text}")
    for failure in stats.failures:
        write(f"FAILED {failure}")
    write("reliability: GREEN" if not bad else f"reliability: RED ({'; '.join(bad)})")
