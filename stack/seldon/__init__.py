"""A ZenML model-deployer flavor that runs the seldon-core microservice locally."""
