"""Deployment steps: serve the champion, then check it answers."""

from steps.deployment.deploy_champion import deploy_champion
from steps.deployment.smoke_test import smoke_test

__all__ = ["deploy_champion", "smoke_test"]
