"""The ``local_seldon`` model-deployer flavor."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator
from zenml.model_deployers.base_model_deployer import (
    BaseModelDeployerConfig,
    BaseModelDeployerFlavor,
)

if TYPE_CHECKING:
    from stack.seldon.deployer import LocalSeldonModelDeployer

FLAVOR_NAME = "local_seldon"
KEYS_OFF_BEYOND_LOOPBACK = (
    "The endpoint would listen on {host}, beyond loopback, without API keys: anyone who "
    "reaches it could predict. Keep api_keys auto or required (clients send "
    "'Authorization: Bearer <key>'; keys: python -m clearsight.api_keys create NAME), or "
    "bind to 127.0.0.1: zenml model-deployer update seldon_local --host=127.0.0.1"
)


def keys_required(host: str, setting: str = "auto") -> bool:
    """Whether a server on ``host`` requires API keys, by the deployer's ``api_keys`` setting.

    ``required`` / ``off`` decide; ``auto`` follows ``CLEARSIGHT_API_KEYS`` when
    set, else requires keys unless ``host`` is a loopback address.

    Raises:
        ValueError: Keys would be off on a non-loopback host (refused), or
            ``CLEARSIGHT_API_KEYS`` is unusable.
    """
    from clearsight.api_keys import MODE_ENV, is_loopback, parse_mode

    explicit = parse_mode(setting)
    if explicit is None:
        explicit = parse_mode(os.environ.get(MODE_ENV))
    required = explicit if explicit is not None else not is_loopback(host)
    if not required and not is_loopback(host):
        raise ValueError(KEYS_OFF_BEYOND_LOOPBACK.format(host=host))
    return required


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
    api_keys: Literal["auto", "required", "off"] = Field(
        default="auto",
        description="Whether clients must send an API key (Authorization: Bearer <key>): auto "
        "(CLEARSIGHT_API_KEYS if set, else required unless host is a loopback address), "
        "required, or off (refused with a non-loopback host).",
    )

    @model_validator(mode="after")
    def _no_open_endpoint_beyond_loopback(self) -> LocalSeldonModelDeployerConfig:
        """Refuse ``api_keys: off`` with a host beyond loopback."""
        from clearsight.api_keys import is_loopback

        if self.api_keys == "off" and not is_loopback(self.host):
            raise ValueError(KEYS_OFF_BEYOND_LOOPBACK.format(host=self.host))
        return self

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
