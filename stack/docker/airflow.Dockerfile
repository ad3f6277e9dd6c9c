# Airflow 3.3 with the Docker provider: ZenML's Airflow orchestrator runs each
# step as a container (DockerOperator) next to Airflow. Airflow itself is named
# with its version so that pip cannot move it while adding the provider
# (Airflow's own advice for extending its image).
FROM apache/airflow:3.3.2
RUN pip install --no-cache-dir "apache-airflow==3.3.2" apache-airflow-providers-docker
