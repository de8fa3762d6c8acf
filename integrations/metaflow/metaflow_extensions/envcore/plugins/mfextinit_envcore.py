"""Registration of the envcore Metaflow extension: decorators, the ``conda`` environment and the flow-level
``environment`` command. Names that Metaflow also defines (``conda``, ``pypi``, ``conda_base``...) replace
Metaflow's own, as extensions do."""

_D = ".conda.decorators."

STEP_DECORATORS_DESC = [
    ("conda", _D + "CondaStepDecorator"),
    ("pypi", _D + "PypiStepDecorator"),
    ("pip", _D + "PipStepDecorator"),
    ("named_env", _D + "NamedEnvStepDecorator"),
    ("sys_packages", _D + "SysPackagesStepDecorator"),
    ("conda_env_internal", ".conda.internal_decorator.CondaEnvInternalDecorator"),
]

FLOW_DECORATORS_DESC = [
    ("conda_base", _D + "CondaFlowDecorator"),
    ("pypi_base", _D + "PypiFlowDecorator"),
    ("pip_base", _D + "PipFlowDecorator"),
    ("named_env_base", _D + "NamedEnvFlowDecorator"),
    ("sys_packages_base", _D + "SysPackagesFlowDecorator"),
]

ENVIRONMENTS_DESC = [("conda", ".conda.environment.CondaEnvironment")]

CLIS_DESC = [("environment", ".conda.flow_cli.cli")]

RUNNER_CLIS_DESC = [("environment", ".conda.runner.EnvironmentRunnerCLI")]
