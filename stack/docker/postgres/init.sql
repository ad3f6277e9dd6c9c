-- Databases for the services sharing this PostgreSQL (run once, on an empty volume).
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;  -- MLflow's users and permissions (basic auth)
CREATE DATABASE airflow;
CREATE DATABASE clearsight;  -- the image catalog, review queue and audit log
