"""envcore's test kit for plugin authors: :mod:`envcore.testing.fixtures` (the test universe) and
:mod:`envcore.testing.conformance` (the conformance suites)."""

from __future__ import annotations

try:  # the kit's assertions show their values when they fail (pytest rewrites only test modules by default)
    import pytest
except ImportError:  # envcore.testing.channel and friends also run without pytest
    pass
else:
    pytest.register_assert_rewrite("envcore.testing.conformance")


def kit_needs_pytest(module: str) -> str:
    """What the kit's pytest modules say when pytest is not installed."""
    return (
        f"{module} runs under pytest, which is not installed here: install envcore with its testing extra "
        "(envcore[testing]) or pytest>=8."
    )
