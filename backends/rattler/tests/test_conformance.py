"""envcore-rattler against the conformance kit, unmodified."""

from envcore.testing.conformance import ResolverConformance


class TestRattlerConformance(ResolverConformance):
    resolver_name = "rattler"
