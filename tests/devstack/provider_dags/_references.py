"""Databricks dynamic value references that survive Airflow's template rendering."""

from __future__ import annotations


class DatabricksReference:
    """A Jinja macro that renders back to a Databricks reference: ``{{tasks.a.values.b}}`` in a
    template field stays ``{{tasks.a.values.b}}`` for Databricks to resolve."""

    def __init__(self, path: str):
        self._path = path

    def __getattr__(self, name: str) -> DatabricksReference:
        if name.startswith("__"):
            raise AttributeError(name)
        return DatabricksReference(f"{self._path}.{name}")

    def __str__(self) -> str:
        return "{{" + self._path + "}}"
