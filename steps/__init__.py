"""ZenML steps: thin, typed adapters around the ``clearsight`` core."""
