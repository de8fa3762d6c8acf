"""envcore-poetry against the conformance kit, unmodified: poetry reads http(s) indexes only, so the kit's
universe index is given over http (the kit's ``wheel_index`` fixture serves it on 127.0.0.1)."""

from __future__ import annotations

import pytest

from envcore.testing.conformance import ResolverConformance
from envcore.testing.fixtures import WheelIndex


class TestPoetryConformance(ResolverConformance):
    resolver_name = "poetry"

    @pytest.fixture
    def pypi_index_url(self, wheel_index: WheelIndex) -> str:
        return wheel_index.http_url
