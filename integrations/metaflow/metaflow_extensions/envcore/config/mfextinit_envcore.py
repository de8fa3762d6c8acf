"""envcore's settings as Metaflow configuration values.

Every key envcore reads (``CONDA_DEPENDENCY_RESOLVER``, ``CONDA_CHANNELS``, ``CONDA_S3ROOT``...) becomes a
``metaflow.metaflow_config`` value read with ``from_conf``: the environment, then the directory-local and
profile config files, like any Metaflow setting. Three consequences:

* a site extension loaded after this one can set its own defaults (they are read back by the launcher);
* Metaflow forwards the values users configured to remote tasks, as it does for its own settings;
* the core's defaults stay the core's: no default is set here (``None`` means "not configured"), which also
  replaces the ``conda`` default open-source Metaflow gives ``CONDA_DEPENDENCY_RESOLVER`` for its own
  ``@conda``.

Inside a step's environment envcore is not importable (only this extension is, from the code package), and
nothing there needs these values.
"""

from metaflow.metaflow_config_funcs import from_conf

# Keys Metaflow itself defines, with its own meaning and defaults.
_METAFLOW_OWN = frozenset(
    {
        "DEFAULT_DATASTORE",
        "DATASTORE_SYSROOT_LOCAL",
        "DATASTORE_SYSROOT_S3",
        "DATASTORE_SYSROOT_GS",
        "DATASTORE_SYSROOT_AZURE",
        "DEBUG_CONDA",
    }
)

try:
    from envcore.config import CORE_SETTINGS as _SETTINGS
except Exception:  # inside a step's environment: envcore's dependencies are not there
    _SETTINGS = ()

for _setting in _SETTINGS:
    if _setting.name not in _METAFLOW_OWN:
        globals()[_setting.name] = from_conf(_setting.name)
