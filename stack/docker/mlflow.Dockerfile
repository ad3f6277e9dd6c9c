# MLflow tracking server with what the compose file and the Kubernetes manifest need:
# PostgreSQL for the backend store, boto3 for artifacts on MinIO/S3, Flask-WTF for
# MLflow's own authentication (`mlflow server --app-name basic-auth`), and
# stack/mlflow_auth.py, which writes that auth config and creates the accounts.
# Build context: stack/ (docker build -f stack/docker/mlflow.Dockerfile stack).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir boto3==1.40.0 psycopg2-binary==2.9.10 Flask-WTF==1.3.0
COPY mlflow_auth.py /opt/clearsight/mlflow_auth.py
