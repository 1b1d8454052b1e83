# The Airflow image of docker-compose.yaml: the official Airflow 3.3 image plus the project's
# pinned requirements (providers, mlflow, databricks-sdk), so DAGs import exactly as in .venv.
# dags/, plugins/ and include/ are mounted by docker-compose.yaml, not copied.
FROM apache/airflow:3.3.2-python3.11

COPY requirements.lock /requirements.lock
# The lock pins apache-airflow==3.3.2 itself, matching the base image, so pip keeps it.
RUN pip install --no-cache-dir -r /requirements.lock
