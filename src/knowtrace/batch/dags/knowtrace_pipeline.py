"""Airflow DAGs of the knowtrace batch pipeline: ``knowtrace_daily`` and ``knowtrace_monthly``.

* ``knowtrace_daily`` (02:00 UTC every day): incremental extract -> transform -> train -> evaluate ->
  publish; a model is refit only when its tenant's answers changed since its newest version.
* ``knowtrace_monthly`` (04:00 UTC on the 1st): the same with ``--full``: silver/gold rebuilt from all
  bronze, and every model refit (recalibrated), registered, and promoted when not worse.

Airflow parses this file in its own environment: it imports Airflow, never knowtrace. Each task runs
one step in the product environment through its command line, ``knowtrace pipeline step <step>
--run-id <dag id>__<run id>``: the functions ``knowtrace pipeline run`` chains. The steps hand over
through the lake (``<lake>/runs/<run id>/``), not XCom.

Settings, each taken from the DAG run's params, else the Airflow Variable ``knowtrace_<name>``, else
the worker's environment variable ``KNOWTRACE_<NAME>``, else the default:

==============  ===========================================================================
lake            the lake directory (required)
source_dsn      the source database (required); a Variable or the environment only, never a
                param: it may hold a password (Airflow masks it in logs and rendered fields)
tenant          ``default``
models          ``elo,bkt,irt``
engine          ``duckdb`` (or ``spark``)
source_name     the database name
bin             the product environment's ``knowtrace`` executable (default: on the worker's PATH)
==============  ===========================================================================
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param, Variable
from airflow.sdk.log import mask_secret

DEFAULTS: dict[str, str | None] = {
    "lake": None,
    "source_dsn": None,
    "tenant": "default",
    "models": "elo,bkt,irt",
    "engine": "duckdb",
    "source_name": "",
    "bin": "knowtrace",
}
SECRET = {"source_dsn"}  # never a param: a run's params are shown in the UI


def knowtrace_setting(params: dict[str, Any], name: str) -> str:
    """A setting: the run's param, else the Variable ``knowtrace_<name>``, else ``$KNOWTRACE_<NAME>``."""
    value = None if name in SECRET else params.get(name)
    if value in (None, ""):
        value = Variable.get(f"knowtrace_{name}", default=None)
    if value in (None, ""):
        value = os.environ.get(f"KNOWTRACE_{name.upper()}")
    if value in (None, ""):
        value = DEFAULTS[name]
    if value is None:
        where = "" if name in SECRET else f"the DAG param {name!r}, "
        raise ValueError(f"knowtrace setting {name!r} is not set: give {where}the Airflow Variable "
                         f"'knowtrace_{name}' or the environment variable KNOWTRACE_{name.upper()} of the worker")
    if name in SECRET:
        mask_secret(value, name=f"knowtrace_{name}")
    return str(value)


def _env(*names: str) -> dict[str, str]:
    """The settings as the task's environment (so no value is ever part of the logged command)."""
    return {f"KNOWTRACE_{n.upper()}": "{{ knowtrace_setting(params, '%s') }}" % n for n in names} | {
        "KNOWTRACE_RUN_ID": "{{ dag.dag_id }}__{{ run_id }}"}


# the lake and the DSN reach the command line through its --lake/--source-dsn environment variables
_STEP = '"$KNOWTRACE_BIN" pipeline step {step} --run-id "$KNOWTRACE_RUN_ID"'
_COMMON = ("bin", "lake")


def _pipeline_dag(dag_id: str, schedule: str, *, full: bool, doc: str) -> DAG:
    full_flag = " --full" if full else ""
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,  # runs of one DAG wait for each other; the lake's locks order the rest
        tags=["knowtrace"],
        doc_md=doc,
        user_defined_macros={"knowtrace_setting": knowtrace_setting},
        params={
            name: Param(None, type=["null", "string"], description=f"default: Variable knowtrace_{name}, "
                                                                   f"else $KNOWTRACE_{name.upper()}")
            for name in DEFAULTS if name not in SECRET
        },
    ) as dag:
        extract = BashOperator(
            task_id="extract",
            doc_md="What changed in the source since the lake's watermark, into bronze (exactly once).",
            bash_command=_STEP.format(step="extract") + ' --tenant "$KNOWTRACE_TENANT" --engine "$KNOWTRACE_ENGINE"'
                         ' ${KNOWTRACE_SOURCE_NAME:+--source-name "$KNOWTRACE_SOURCE_NAME"}',
            env=_env(*_COMMON, "source_dsn", "tenant", "engine", "source_name"), append_env=True)
        transform = BashOperator(
            task_id="transform",
            doc_md="Silver and gold rebuilt from every bronze load" + (" (always)." if full else " (when needed)."),
            bash_command=_STEP.format(step="transform") + ' --engine "$KNOWTRACE_ENGINE"' + full_flag,
            env=_env(*_COMMON, "engine"), append_env=True)
        train = BashOperator(
            task_id="train",
            doc_md="Each model fit on the train learners; kept in the run's folder as a candidate.",
            bash_command=_STEP.format(step="train") + ' --tenant "$KNOWTRACE_TENANT" --models "$KNOWTRACE_MODELS"'
                         + full_flag,
            env=_env(*_COMMON, "tenant", "models"), append_env=True)
        evaluate = BashOperator(
            task_id="evaluate", doc_md="Each candidate scored on the held-out learners.",
            bash_command=_STEP.format(step="evaluate"), env=_env(*_COMMON), append_env=True)
        publish = BashOperator(
            task_id="publish",
            doc_md="Each candidate registered, and promoted when not worse on AUC; fails when a model failed.",
            bash_command=_STEP.format(step="publish"), env=_env(*_COMMON), append_env=True)
        extract >> transform >> train >> evaluate >> publish
    return dag


knowtrace_daily = _pipeline_dag(
    "knowtrace_daily", "0 2 * * *", full=False,
    doc="knowtrace batch pipeline, daily: incremental extract, rebuild when needed, refit the models whose "
        "answers changed, evaluate, register and promote when not worse.")
knowtrace_monthly = _pipeline_dag(
    "knowtrace_monthly", "0 4 1 * *", full=True,
    doc="knowtrace batch pipeline, monthly: incremental extract, full rebuild of silver/gold, every model "
        "refit (recalibrated), evaluated, registered and promoted when not worse.")
