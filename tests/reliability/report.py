"""The reliability suite's report: tests record what they exercised through the ``reliability_report``
fixture (``reliability_report.record("fault runs")``), and the session ends with one table of counts and
failures. A green run has no failed test and a zero in every row marked "must be 0".

A test counts (passed, failed, known gap) under the first category it recorded, else under its module's
``RELIABILITY_CATEGORY``.

Each test's figures travel on its reports (``report.reliability``), and the table adds up the reports it
sees: so the table is the same whether the tests ran in this process or in pytest-xdist workers, whose
reports reach the controlling process (the one that prints)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
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
class Record:
    """What one test recorded."""

    categories: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


RECORD = pytest.StashKey[Record]()


class ReliabilityReport:
    """One test's handle on the session report."""

    def __init__(self, record: Record) -> None:
        self._record = record

    def record(self, category: str, n: int = 1) -> None:
        """Add ``n`` to ``category`` (``n=0`` only attributes this test to the category)."""
        self._record.counts[category] += n
        if category not in self._record.categories:
            self._record.categories.append(category)

    def note(self, text: str) -> None:
        """A measured figure, printed under the table."""
        self._record.notes.append(text)


def annotate(item: pytest.Item, report: pytest.TestReport) -> None:
    """Put the test's category on each of its reports, and its counts and notes on the last one (teardown),
    as plain data that pytest-xdist serializes with the report."""
    record = item.stash.get(RECORD, None) or Record()
    module = getattr(item, "module", None)
    category = (
        record.categories[0]
        if record.categories
        else getattr(module, "RELIABILITY_CATEGORY", item.nodeid.split("::")[0])
    )
    last = report.when == "teardown"
    report.reliability = {  # type: ignore[attr-defined]
        "category": category,
        "counts": dict(record.counts) if last else {},
        "notes": list(record.notes) if last else [],
    }


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)
    passed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    gaps: Counter[str] = field(default_factory=Counter)  # expected failures (pytest.xfail): known gaps
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Summary:
    """A plugin that adds up the reliability tests' reports and prints the table at the end of the session."""

    def __init__(self, rootpath: Path) -> None:
        self.stats = Stats()
        self._prefix = Path(__file__).parent.relative_to(rootpath).as_posix() + "/"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data: dict[str, Any] | None = getattr(report, "reliability", None)
        if data is None:
            # a report the controlling process made itself (a worker that crashed in a reliability test)
            if not (report.failed and report.nodeid.startswith(self._prefix)):
                return
            data = {"category": report.nodeid.split("::")[0], "counts": {}, "notes": []}
        stats, category = self.stats, data["category"]
        stats.counts.update(data["counts"])
        stats.notes.extend(data["notes"])
        if report.failed:
            stats.failed[category] += 1
            stats.failures.append(f"{report.nodeid} ({report.when})")
        elif report.when == "call" and hasattr(report, "wasxfail"):
            stats.gaps[category] += 1
        elif report.when == "call" and report.passed:
            stats.passed[category] += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        stats = self.stats
        if not (stats.passed or stats.failed or stats.gaps):
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
