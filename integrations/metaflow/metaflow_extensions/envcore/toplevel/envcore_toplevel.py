"""Every public name here becomes ``metaflow.<name>`` (Metaflow's top-level extension point): the flow
mutators ``resolved_uv`` and ``resolved_req``, the parsers of requirement files for a ``Config`` (``req_parser``,
``yml_parser``, ``toml_parser``), and ``FlowAPI`` (the original's name for ``metaflow.Runner``).
``__mf_extensions__`` and ``__version__`` make Metaflow's version read ``2.19.39+envcore(0.2.0)``."""

import importlib.metadata as _metadata

from metaflow.runner.metaflow_runner import Runner as FlowAPI
from metaflow_extensions.envcore.plugins.conda.mutators import resolved_req, resolved_uv
from metaflow_extensions.envcore.plugins.conda.parsers import req_parser, toml_parser, yml_parser

__mf_extensions__ = "envcore"
try:
    __version__ = _metadata.version("metaflow-envcore")
except _metadata.PackageNotFoundError:  # in a step's environment: the code package, not a distribution
    __version__ = "unknown"

__all__ = ["FlowAPI", "req_parser", "resolved_req", "resolved_uv", "toml_parser", "yml_parser"]
