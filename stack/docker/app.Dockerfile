# The Streamlit review app (and the project's code, for its ZenML/MLflow reads).
# Build from the repository root: docker compose does (context ../..).
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY clearsight ./clearsight
# The project's dependencies include psycopg 3, the catalog's PostgreSQL driver
# (CLEARSIGHT_CATALOG_URL=postgresql+psycopg://...).
RUN pip install --no-cache-dir -c constraints.txt .
COPY . .
EXPOSE 8501 8502
CMD ["streamlit", "run", "ui/main.py", "--server.port", "8501", "--server.address", "0.0.0.0", \
     "--server.headless", "true"]
