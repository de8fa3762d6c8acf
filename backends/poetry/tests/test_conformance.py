"""envcore-poetry against the conformance kit, unmodified.

poetry reads packages from http(s) indexes only, while the kit points PyPI resolvers at the universe's
``file://`` index: its ``config`` and ``make_request`` fixtures both use ``universe.simple_url``. The two
overrides below run the kit's own fixture code with that one URL swapped for the same index served over http
on 127.0.0.1 (the kit's ``wheel_index`` fixture); every test is the kit's. Overriding ``universe`` itself is
not possible: the kit's session fixtures (``wheel_index``, ``auth_wheel_index``) depend on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from envcore.config import Config
from envcore.testing.channel import Universe
from envcore.testing.conformance import ResolverConformance
from envcore.testing.fixtures import WheelIndex
from envcore.types import ResolveRequest, ResolverPlugin


def over_http(universe: Universe, wheel_index: WheelIndex) -> Universe:
    return dataclasses.replace(universe, simple_url=wheel_index.http_url)


class TestPoetryConformance(ResolverConformance):
    resolver_name = "poetry"

    @pytest.fixture
    def config(self, universe: Universe, wheel_index: WheelIndex) -> Config:
        kit_config: Callable[..., Config] = ResolverConformance.config.__wrapped__  # type: ignore[attr-defined]
        return kit_config(self, over_http(universe, wheel_index))

    @pytest.fixture
    def make_request(
        self, plugin: ResolverPlugin, universe: Universe, config: Config, wheel_index: WheelIndex
    ) -> Callable[..., ResolveRequest]:
        kit_make_request: Callable[..., Callable[..., ResolveRequest]]
        kit_make_request = ResolverConformance.make_request.__wrapped__  # type: ignore[attr-defined]
        return kit_make_request(self, plugin, over_http(universe, wheel_index), config)
