# The Streamlit review app (and the project's code, for its ZenML/MLflow reads).
# Build from the repository root: docker compose does (context ../..).
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY clearsight ./clearsight
RUN pip install --no-cache-dir -c constraints.txt . psycopg2-binary==2.9.10
COPY . .
EXPOSE 8501 8502
CMD ["streamlit", "run", "ui/main.py", "--server.port", "8501", "--server.address", "0.0.0.0", \
     "--server.headless", "true"]
