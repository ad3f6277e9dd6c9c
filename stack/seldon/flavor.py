"""The ``local_seldon`` model-deployer flavor."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field
from zenml.model_deployers.base_model_deployer import (
    BaseModelDeployerConfig,
    BaseModelDeployerFlavor,
)

if TYPE_CHECKING:
    from stack.seldon.deployer import LocalSeldonModelDeployer

FLAVOR_NAME = "local_seldon"


class LocalSeldonModelDeployerConfig(BaseModelDeployerConfig):
    """Configuration of the local Seldon model deployer."""

    service_path: str = Field(
        default="",
        description="Folder for the services' files (config, PID, logs, served models). "
        "Default: a folder in ZenML's local stores.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="gunicorn workers per microservice, used when the deploy step does not "
        "set its own `workers` (configs/deploy.yaml).",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address the microservices bind to; 0.0.0.0 exposes them on every interface.",
    )

    @property
    def is_local(self) -> bool:
        """Runs on this machine."""
        return True


class LocalSeldonModelDeployerFlavor(BaseModelDeployerFlavor):
    """Serve models with the seldon-core 1.19 microservice as local daemons."""

    @property
    def name(self) -> str:
        """The flavor name."""
        return FLAVOR_NAME

    @property
    def display_name(self) -> str:
        """The name shown in the dashboard."""
        return "Local Seldon"

    @property
    def docs_url(self) -> str | None:
        """No public docs page."""
        return None

    @property
    def sdk_docs_url(self) -> str | None:
        """No public SDK docs page."""
        return None

    @property
    def logo_url(self) -> str:
        """Seldon's logo, as ZenML's own Seldon flavor uses."""
        return "https://public-flavor-logos.s3.eu-central-1.amazonaws.com/model_deployer/seldon.png"

    @property
    def config_class(self) -> type[LocalSeldonModelDeployerConfig]:
        """The config class."""
        return LocalSeldonModelDeployerConfig

    @property
    def implementation_class(self) -> type[LocalSeldonModelDeployer]:
        """The deployer class."""
        from stack.seldon.deployer import LocalSeldonModelDeployer

        return LocalSeldonModelDeployer
