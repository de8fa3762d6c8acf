"""Top-level names this extension adds to ``metaflow`` (``from metaflow import resolved_uv``)."""

toplevel = "envcore_toplevel"
