"""Idempotent registration of the platform's ZenML stacks."""
