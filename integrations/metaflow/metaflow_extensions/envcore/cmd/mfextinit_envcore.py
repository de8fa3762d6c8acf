"""Registration of ``metaflow environment``: the machine-level environment commands."""

CMDS_DESC = [("environment", ".environment_cmd.cli")]
