"""envcore-pip against the conformance kit, unmodified."""

from envcore.testing.conformance import ResolverConformance


class TestPipConformance(ResolverConformance):
    resolver_name = "pip"
