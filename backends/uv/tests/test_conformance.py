"""envcore-uv against the conformance kit, unmodified."""

from envcore.testing.conformance import ResolverConformance


class TestUvConformance(ResolverConformance):
    resolver_name = "uv"
