"""envcore-example: a PyPI resolver over a PEP 503 ``file://`` index, as a template for envcore plugins."""
