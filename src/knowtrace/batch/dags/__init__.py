"""The scheduler's definitions of the batch pipeline, shipped with knowtrace (see docs/batch.md).

``knowtrace_pipeline.py`` in this folder is read by the scheduler in its own environment; it is not
meant to be imported here. ``DAGS_FOLDER`` is the folder to point the scheduler at
(``knowtrace pipeline dags-folder`` prints it).
"""

from pathlib import Path

__all__ = ["DAGS_FOLDER", "DAG_FILE"]

DAGS_FOLDER = Path(__file__).resolve().parent
DAG_FILE = DAGS_FOLDER / "knowtrace_pipeline.py"
