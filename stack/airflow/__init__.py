"""Running the pipelines under Airflow without Docker: DAG generator, entrypoint, client."""
