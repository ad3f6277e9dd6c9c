# Airflow 3.3 with the Docker provider: ZenML's Airflow orchestrator runs each
# step as a container (DockerOperator) next to Airflow.
FROM apache/airflow:3.3.2
RUN pip install --no-cache-dir apache-airflow-providers-docker
