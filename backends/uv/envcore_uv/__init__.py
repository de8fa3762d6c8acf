"""envcore-uv: resolve and install PyPI packages with uv."""
