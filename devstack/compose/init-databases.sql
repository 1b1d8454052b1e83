-- PostgreSQL's entrypoint runs this once, on an empty data volume: POSTGRES_DB creates the
-- Airflow metadata database, this adds MLflow's backend store next to it.
CREATE DATABASE mlflow;
