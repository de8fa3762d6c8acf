"""The plugin against envcore's conformance kit: subclass, name the resolver, nothing else."""

from envcore.testing.conformance import ResolverConformance


class TestExampleConformance(ResolverConformance):
    resolver_name = "example"
