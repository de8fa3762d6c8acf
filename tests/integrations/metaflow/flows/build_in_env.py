"""The user guide's fetch_at_exec example: `start` (in the launching interpreter) resolves and aliases an
environment named after the run id and a parameter; `end` finds it by that name when its task starts."""

import subprocess
import sys
import tempfile

from metaflow import FlowSpec, Parameter, conda, current, named_env, step


class BuildInEnvFlow(FlowSpec):
    my_var = Parameter("my_var", default=123)

    @conda(disabled=True)
    @step
    def start(self):
        run = current.run_id
        alias = f"test/build_in_step/id_{run}_{run}_{self.my_var}"
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
            req.write("fx-core==1.1.0\n")
            req.flush()
            subprocess.check_call(
                [
                    sys.executable,
                    "-m",
                    "metaflow.cmd.main_cli",
                    "environment",
                    "resolve",
                    "--alias",
                    alias,
                    "-r",
                    req.name,
                ]
            )
        print(f"step=start alias={alias}")
        self.next(self.end)

    @named_env(
        name="test/build_in_step/id_@{METAFLOW_RUN_ID}_@{METAFLOW_RUN_ID_BASE}_@{METAFLOW_INIT_MY_VAR}",
        fetch_at_exec=True,
    )
    @step
    def end(self):
        import fx_core

        print(f"step=end python={sys.executable} fx-core={fx_core.__version__}")


if __name__ == "__main__":
    BuildInEnvFlow()
