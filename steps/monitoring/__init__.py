"""Monitoring steps: the window, the decisions, and their publication."""

from steps.monitoring.decide import monitoring_decision
from steps.monitoring.publish import publish_monitoring
from steps.monitoring.window import monitoring_window

__all__ = ["monitoring_decision", "monitoring_window", "publish_monitoring"]
