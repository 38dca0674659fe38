"""Job spec files: what `lavie jobs submit --spec FILE` runs on a cluster, validated on load.

A spec (YAML or JSON) names a `lavie` command and its arguments, the resources its driver takes
on the cluster and the job's runtime environment::

    command: train                       # a lavie command: curate, stats, train, ...
    args: [/shared/configs/base.yaml, --set, run.max_steps=20000]
    job_id: base-20k                     # optional; Ray generates one otherwise
    resources: {num_cpus: 1, num_gpus: 0, memory_gb: 8, custom: {}}   # for the job's driver
    runtime_env:
      working_dir: null                  # a local folder shipped with the job
      pip: []                            # requirements installed for the job
      env_vars: {HF_HUB_OFFLINE: "1"}

The workers of a training job take the resources of its train config (``scaling``), not these.
Credentials have no place in a spec: the cluster keeps a job's entrypoint and runtime
environment and its dashboard shows them. A spec that holds one is refused; give credentials to
the cluster's nodes (their environment or ``~/.aws/credentials``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from lavie.core.config import StrictModel, load_config, one_of
from lavie.core.storage import is_secret_key, redact_command_line

#: The `lavie` commands a job may run (the others act on the cluster from outside, or not at all).
SUBMITTABLE = ("curate", "stats", "train")


class JobResources(StrictModel):
    """What the job's driver (the `lavie` command) reserves on the cluster."""

    num_cpus: float = Field(0, ge=0)
    num_gpus: float = Field(0, ge=0)
    memory_gb: float | None = Field(None, gt=0)
    custom: dict[str, float] = Field(default_factory=dict)


class RuntimeEnv(StrictModel):
    working_dir: str | None = None
    pip: list[str] = Field(default_factory=list)
    env_vars: dict[str, str] = Field(default_factory=dict)

    @field_validator("env_vars")
    @classmethod
    def _no_credentials(cls, value: dict[str, str]) -> dict[str, str]:
        secret = [name for name in value if is_secret_key(name)]
        if secret:
            raise ValueError(f"{secret[0]} is a credential: {NO_CREDENTIALS}")
        return value

    def to_ray(self) -> dict[str, Any]:
        env: dict[str, Any] = {}
        if self.working_dir:
            env["working_dir"] = self.working_dir
        if self.pip:
            env["pip"] = list(self.pip)
        if self.env_vars:
            env["env_vars"] = dict(self.env_vars)
        return env


NO_CREDENTIALS = (
    "the cluster keeps a job's command and environment and its dashboard shows them; give "
    "credentials to the cluster's nodes (their environment or ~/.aws/credentials)"
)


class JobSpec(StrictModel):
    command: str
    args: list[str] = Field(default_factory=list)
    job_id: str | None = Field(None, min_length=1)
    resources: JobResources = Field(default_factory=JobResources)
    runtime_env: RuntimeEnv = Field(default_factory=RuntimeEnv)

    @field_validator("command")
    @classmethod
    def _submittable(cls, value: str) -> str:
        return one_of(value, SUBMITTABLE, "a command a job runs")

    @field_validator("args")
    @classmethod
    def _no_credential_args(cls, value: list[str]) -> list[str]:
        shown = redact_command_line(value)
        for given, redacted in zip(value, shown):
            if given != redacted:
                raise ValueError(f"'{redacted}' gives a credential: {NO_CREDENTIALS}")
        return value

    @property
    def entrypoint_argv(self) -> list[str]:
        return ["lavie", self.command, *self.args]

    def submit_options(self) -> dict[str, Any]:
        """Keyword arguments of Ray's ``JobSubmissionClient.submit_job`` (entrypoint excepted)."""
        options: dict[str, Any] = {"submission_id": self.job_id, "runtime_env": self.runtime_env.to_ray() or None}
        if self.resources.num_cpus:
            options["entrypoint_num_cpus"] = self.resources.num_cpus
        if self.resources.num_gpus:
            options["entrypoint_num_gpus"] = self.resources.num_gpus
        if self.resources.memory_gb:
            options["entrypoint_memory"] = int(self.resources.memory_gb * 2**30)
        if self.resources.custom:
            options["entrypoint_resources"] = dict(self.resources.custom)
        return options


def load_spec(source: str | Path | Mapping[str, Any], overrides: Sequence[tuple[str, Any]] = ()) -> JobSpec:
    """A spec from a YAML/JSON file or a mapping, with dotted overrides; one-line errors."""
    where = f"job spec {source}" if isinstance(source, (str, Path)) else "job"
    return load_config(JobSpec, source, overrides, where=where)
