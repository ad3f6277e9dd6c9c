"""The app's data access layer: endpoint, review store, ZenML and MLflow, admin commands."""
