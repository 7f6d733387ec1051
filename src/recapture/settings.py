"""The one settings object, built at start-up from RECAPTURE_* variables and an optional TOML file."""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATABASE_URL = "sqlite:///./recapture.db"


class ShopSettings(BaseModel):
    """One Shopify store. Several can be listed in the TOML file as [[shops]] tables."""

    domain: str
    # The current secret first; the previous one keeps verifying webhooks while Shopify rotates it.
    webhook_secrets: list[SecretStr] = Field(default_factory=list)
    klaviyo_private_key: SecretStr | None = None
    # The fraction of Klaviyo's documented rate limits recapture paces itself at; the rest is margin for other
    # apps on the same Klaviyo account. None: the client's default (klaviyo.DEFAULT_HEADROOM).
    klaviyo_headroom: float | None = Field(default=None, gt=0, le=1)
    # Storefront origins besides https://<domain> (custom domains) that the pixel may post from.
    allowed_origins: list[str] = Field(default_factory=list)
    default_phone_region: str = "US"
    # Identity resolution: values that must never link (the shop's own support address, a staff test card...).
    blocked_identifiers: list[str] = Field(default_factory=list)
    blocked_email_domains: list[str] = Field(default_factory=list)
    identity_window_days: int = 400
    # Probabilistic re-identification of returning devices; off unless the accuracy harness justifies it.
    probabilistic_matching: bool = False
    # Abandonment and delivery.
    delivery_mode: Literal["abandonment", "forward"] = "abandonment"
    metric_suffix: str = " - Recaptured"
    hold_minutes: dict[str, int] = Field(
        default_factory=lambda: {"checkout": 60, "cart": 60, "browse": 60, "session": 120}
    )
    cool_down_days: int = 7
    send_when_native: bool = False
    deliver_probabilistic: bool = False
    # Klaviyo list that shoppers who opt in to email marketing at checkout are subscribed to (none: no subscribing).
    klaviyo_list_id: str | None = None
    # Any ESP: the same events as signed JSON posted to this URL.
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None

    @field_validator("domain")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def origins(self) -> frozenset[str]:
        return frozenset({f"https://{self.domain}", *self.allowed_origins})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECAPTURE_", extra="ignore", hide_input_in_errors=True)

    database_url: str = DEFAULT_DATABASE_URL
    shop_domain: str | None = None
    shopify_webhook_secret: SecretStr | None = None
    shopify_webhook_secret_previous: SecretStr | None = None
    klaviyo_private_key: SecretStr | None = None
    klaviyo_base_url: str = "https://a.klaviyo.com"
    admin_token: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    trusted_proxies: str = ""
    clock: Literal["system", "manual"] = "system"
    # Keys for encrypting contact data at rest and hashing identifiers; a key file is made for SQLite if unset.
    secret_key: SecretStr | None = None
    shop_allowed_origins: str = ""
    probabilistic_matching: bool = False
    delivery_mode: Literal["abandonment", "forward"] = "abandonment"
    klaviyo_list_id: str | None = None
    esp_webhook_url: str | None = None
    esp_webhook_secret: SecretStr | None = None
    # Shopify runs custom pixels in a sandboxed iframe whose requests carry `Origin: null`.
    allow_pixel_sandbox_origin: bool = True
    max_request_bytes: int = 500_000
    max_envelope_bytes: int = 32_768
    log_level: str = "info"
    log_format: Literal["json", "console"] = "json"
    shops: list[ShopSettings] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments win, then RECAPTURE_* variables, then the TOML file named by RECAPTURE_CONFIG.
        config_path = os.environ.get("RECAPTURE_CONFIG")
        if not config_path:
            return (init_settings, env_settings)
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=Path(config_path)))

    @cached_property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        # Parsed once: every pixel request asks.
        cidrs = [cidr.strip() for cidr in self.trusted_proxies.split(",") if cidr.strip()]
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)

    def all_shops(self) -> list[ShopSettings]:
        shops = list(self.shops)
        if self.shop_domain and all(s.domain != self.shop_domain.lower() for s in shops):
            secrets = [s for s in (self.shopify_webhook_secret, self.shopify_webhook_secret_previous) if s]
            origins = [o.strip() for o in self.shop_allowed_origins.split(",") if o.strip()]
            shops.append(
                ShopSettings(
                    domain=self.shop_domain, webhook_secrets=secrets,
                    klaviyo_private_key=self.klaviyo_private_key, allowed_origins=origins,
                    probabilistic_matching=self.probabilistic_matching, delivery_mode=self.delivery_mode,
                    webhook_url=self.esp_webhook_url, webhook_secret=self.esp_webhook_secret,
                    klaviyo_list_id=self.klaviyo_list_id,
                )
            )
        return shops

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once, at start-up (never at import time)."""
    return Settings(**overrides)
