"""Flows: pipelines written as Python classes, with Metaflow's user API.

A flow written for Metaflow's local runtime runs here after changing only its
imports (``from metaflow import ...`` becomes ``from inloop import ...``).
"""

from inloop.flow.client import (
    DataArtifact,
    Flow,
    Run,
    Step,
    Task,
    default_namespace,
    get_namespace,
    namespace,
)
from inloop.flow.current import current
from inloop.flow.decorators import (
    airflow_external_task_sensor,
    airflow_s3_key_sensor,
    batch,
    card,
    catch,
    conda,
    conda_base,
    environment,
    kubernetes,
    nvidia,
    project,
    pypi,
    pypi_base,
    resources,
    retry,
    schedule,
    secrets,
    step,
    timeout,
    trigger,
    trigger_on_finish,
)
from inloop.flow.parameters import IncludeFile, JSONType, Parameter
from inloop.flow.runner import ExecutingRun, Runner
from inloop.flow.spec import FlowSpec, Inputs, MergeArtifactsError
from inloop.flow.task import CaughtException

__all__ = [
    "CaughtException",
    "DataArtifact",
    "ExecutingRun",
    "Flow",
    "FlowSpec",
    "IncludeFile",
    "Inputs",
    "JSONType",
    "MergeArtifactsError",
    "Parameter",
    "Run",
    "Runner",
    "Step",
    "Task",
    "airflow_external_task_sensor",
    "airflow_s3_key_sensor",
    "batch",
    "card",
    "catch",
    "conda",
    "conda_base",
    "current",
    "default_namespace",
    "environment",
    "get_namespace",
    "kubernetes",
    "namespace",
    "nvidia",
    "project",
    "pypi",
    "pypi_base",
    "resources",
    "retry",
    "schedule",
    "secrets",
    "step",
    "timeout",
    "trigger",
    "trigger_on_finish",
]
