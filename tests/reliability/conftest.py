"""The reliability suite's fixture and the hook that puts each test's figures on its reports; the table is
made by ``report.Summary``, registered in ``tests/conftest.py`` (see ``report.py``)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from .report import RECORD, Record, ReliabilityReport, annotate


@pytest.fixture
def reliability_report(request: pytest.FixtureRequest) -> ReliabilityReport:
    return ReliabilityReport(request.node.stash.setdefault(RECORD, Record()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    annotate(item, report)
    return report
