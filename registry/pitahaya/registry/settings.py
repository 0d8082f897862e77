"""Registry configuration, read from ``PITAHAYA_*`` environment variables (or passed in).

Only the registry reads the environment; everything else receives a `Settings` object.
Derived locations default to folders under ``data_dir`` so one variable moves a whole
installation::

    <data_dir>/registry/registry.db     SQLite metadata (PITAHAYA_DATABASE_URL overrides)
    <data_dir>/registry/blobs/          content-addressed package archives and release docs
    <data_dir>/registry/tuf/keys/       one private key per TUF role (mode 0600)
    <data_dir>/registry/tuf/metadata/   the signed, static TUF metadata served to devices

Nothing is created when `Settings` is constructed; ``create_app`` makes the folders.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pitahaya.registry.errors import ConfigurationError

ENV_PREFIX = "PITAHAYA_"

#: Tokens shorter than this are guessable, so the registry refuses to start with one.
MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Everything the registry needs to run, with units in the names.

    Attributes:
        data_dir: Root of all registry state unless a location below is set.
        registry_token: Bearer token publishers must present; no default on purpose.
        database_url: SQLAlchemy URL; default SQLite at ``<data_dir>/registry/registry.db``.
        blob_dir: Blob store folder; default ``<data_dir>/registry/blobs``.
        tuf_dir: TUF keys and metadata; default ``<data_dir>/registry/tuf``.
        max_upload_bytes: Largest package archive accepted by ``POST /api/v1/packages``.
        tuf_refresh_interval_seconds: How often the server re-signs TUF roles close to expiry
            (timestamp expires after a day, so this must be well below that).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    data_dir: Path = Path(".pitahaya")
    registry_token: SecretStr
    database_url: str | None = None
    blob_dir: Path | None = None
    tuf_dir: Path | None = None
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    tuf_refresh_interval_seconds: float = Field(default=3600.0, gt=0, le=6 * 3600)

    @field_validator("registry_token")
    @classmethod
    def _token_is_strong(cls, token: SecretStr) -> SecretStr:
        if len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters (try `openssl rand -hex 32`)")
        return token

    @property
    def registry_dir(self) -> Path:
        return self.data_dir / "registry"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.registry_dir / 'registry.db'}"

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.registry_dir / "blobs"

    @property
    def resolved_tuf_dir(self) -> Path:
        return self.tuf_dir or self.registry_dir / "tuf"


def load_settings() -> Settings:
    """Read `Settings` from the environment, explaining a missing or bad variable by name.

    Raises:
        ConfigurationError: a required variable (e.g. ``PITAHAYA_REGISTRY_TOKEN``) is missing or invalid.
    """
    try:
        return Settings()  # type: ignore[call-arg]  # pydantic-settings fills fields from the environment
    except ValidationError as e:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in e.errors()
        )
        raise ConfigurationError(f"invalid registry configuration: {problems}") from e
