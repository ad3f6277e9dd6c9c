# MLflow tracking server with the drivers the compose file needs:
# PostgreSQL for the backend store, boto3 for artifacts on MinIO/S3.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir boto3==1.40.0 psycopg2-binary==2.9.10
