"""MLflow model-registry operators for Airflow: register, alias, promote, gate, roll back.

Public names import from :mod:`mlops.operators`, :mod:`mlops.sensors`, :mod:`mlops.hooks`
and :mod:`mlops.triggers`. Nothing here imports MLflow at module level, so DAG files that use
these operators parse fast.
"""
