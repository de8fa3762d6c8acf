"""envcore-pip: PyPI resolution with pip's own resolver."""
