"""Registry configuration, read from ``PITAHAYA_*`` environment variables, a TOML file, or passed in.

Only the registry reads the environment; everything else receives a `Settings` object.
Sources, strongest first: arguments to ``Settings(...)``, ``PITAHAYA_*`` variables, then the
TOML file named by ``PITAHAYA_CONFIG_FILE`` (top-level keys are the field names below, e.g.
``s3_bucket = "packages"``).
Derived locations default to folders under ``data_dir`` so one variable moves a whole
installation::

    <data_dir>/registry/registry.db     SQLite metadata (PITAHAYA_DATABASE_URL overrides)
    <data_dir>/registry/blobs/          content-addressed package archives and release docs
    <data_dir>/registry/tuf/keys/       one private key per TUF role (mode 0600)
    <data_dir>/registry/tuf/metadata/   the signed, static TUF metadata served to devices
    <data_dir>/mlflow.db                device telemetry forwarded to MLflow (unless
                                        MLFLOW_TRACKING_URI or mlflow_tracking_uri says otherwise)

Scale-out: set ``database_url`` to ``postgresql+psycopg://...``, ``tuf_storage`` to
``database`` and ``s3_bucket`` (with ``s3_endpoint_url``, ``s3_region`` and credentials) to keep
blobs in S3-compatible storage: replicas then share no disk but the online keys, and
``rate_limit_storage_uri`` (``redis://...``) shares their rate limits.

Nothing is created when `Settings` is constructed; ``create_app`` makes the folders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from limits import parse as parse_rate_limit
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pitahaya.client_runtime import Limits
from pitahaya.client_runtime.package import MAX_MANIFEST_BYTES
from pitahaya.registry.errors import ConfigurationError

ENV_PREFIX = "PITAHAYA_"

#: Names a TOML file with settings; environment variables override its values.
CONFIG_FILE_VARIABLE = f"{ENV_PREFIX}CONFIG_FILE"

#: Tokens shorter than this are guessable, so the registry refuses to start with one.
MIN_TOKEN_LENGTH = 16

#: The logging levels the registry may be set to (``logging``'s names).
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """Everything the registry needs to run, with units in the names.

    Attributes:
        data_dir: Root of all registry state unless a location below is set.
        registry_token: Bearer token publishers must present; no default on purpose.
        database_url: SQLAlchemy URL; default SQLite at ``<data_dir>/registry/registry.db``.
        blob_dir: Blob store folder; default ``<data_dir>/registry/blobs``.
        tuf_dir: TUF keys and metadata; default ``<data_dir>/registry/tuf``.
        tuf_storage: Where the signed TUF metadata lives: ``files`` under ``tuf_dir`` (one
            host), or ``database``, the registry's PostgreSQL database, so replicas that share
            no disk serve one version chain (with PostgreSQL, publishes then take an advisory lock;
            the online keys stay files under ``tuf_dir/keys``, which every replica mounts). A
            registry switched to ``database`` imports its existing files on start.
        max_upload_bytes: Largest package archive accepted by ``POST /api/v1/packages``.
        max_manifest_bytes: Largest manifest a pushed package may carry, as stored (JSON); at
            most the format's own cap. xz packs a padded manifest a thousandfold, so the
            archive's size alone does not bound the database row or the package listings.
        max_json_body_bytes: Largest JSON request body (releases, tokens, telemetry); the
            framework buffers a JSON body whole before any route code runs.
        tuf_refresh_interval_seconds: How often the server re-signs TUF roles close to expiry
            (timestamp expires after a day, so this must be well below that).
        s3_bucket: Keep blobs in this S3 bucket instead of ``blob_dir`` (created if missing).
        s3_endpoint_url: S3-compatible endpoint (MinIO, SeaweedFS); None means AWS.
        s3_region: S3 region.
        s3_access_key_id / s3_secret_access_key: S3 credentials; None means boto3's default chain.
        s3_prefix: Key prefix inside the bucket, so several registries can share one.
        rate_limit_per_token: Requests one API token may make (``limits`` syntax, e.g. ``600/minute``).
        rate_limit_per_ip: Requests to ``/api/`` one client address may make.
        rate_limit_storage_uri: Where rate-limit counts live; ``memory://`` counts per worker,
            ``redis://host:6379`` shares them across workers and hosts.
        mlflow_tracking_uri: Where aggregated device telemetry is forwarded (MLflow tracking URI,
            also its model registry for the ``champion`` alias). None (the default) means the
            project's default store: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<data_dir>/mlflow.db``
            (what the ``pitahaya`` commands use); see `resolved_mlflow_tracking_uri`.
        mlflow_forwarding: Forward to MLflow at all (on by default); ``PITAHAYA_MLFLOW_FORWARDING=false``
            turns it off (the aggregates still feed ``/metrics`` and the rollout gate).
        telemetry_forward_interval_seconds: How often aggregates are forwarded to MLflow.
        gate_interval_seconds: How often the quality gates of gated rollouts are evaluated
            (each evaluation may advance, pause or roll back a rollout).
        blob_gc_min_age_seconds: Orphan blobs younger than this are kept by garbage collection,
            because a push in flight writes its blob before committing its row.
        preflight_enabled: Load every pushed package as a device would (sandboxed worker
            process, self-test) and refuse it with 422 when a device would. Turn off only for
            tests that push hostile packages on purpose (to check that devices survive them)
            and for a registry fed only by your own trusted CI.
        preflight_concurrency: Pre-flights running at once in one server process (each is a
            worker process with up to ``preflight_memory_bytes``); with ``--workers N``, N times this.
        preflight_wait_seconds: How long a push waits for a free pre-flight slot before it is
            answered 503 with ``Retry-After``.
        preflight_load_timeout_seconds: Deadline of the pre-flight load (import, model, warm-up,
            self-test): a hang detector, three times the device's deadline by default, so a
            busy registry never refuses a package that a device loads in time.
        preflight_memory_bytes: Memory a pre-flight worker may add once started; the device's
            default unless set.
        log_json: One JSON object per log line (with the request id) instead of plain text.
        log_level: ``INFO`` logs every request (the access log); ``WARNING`` only problems.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    data_dir: Path = Path(".pitahaya")
    registry_token: SecretStr
    database_url: str | None = None
    blob_dir: Path | None = None
    tuf_dir: Path | None = None
    tuf_storage: Literal["files", "database"] = "files"
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_manifest_bytes: int = Field(default=256 * 1024, gt=0, le=MAX_MANIFEST_BYTES)
    max_json_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    tuf_refresh_interval_seconds: float = Field(default=3600.0, gt=0, le=6 * 3600)
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_prefix: str = ""
    rate_limit_per_token: str = "1200/minute"
    rate_limit_per_ip: str = "2400/minute"
    rate_limit_storage_uri: str = "memory://"
    mlflow_tracking_uri: str | None = None
    mlflow_forwarding: bool = True
    telemetry_forward_interval_seconds: float = Field(default=30.0, gt=0)
    gate_interval_seconds: float = Field(default=30.0, gt=0)
    blob_gc_min_age_seconds: float = Field(default=3600.0, ge=0)
    preflight_enabled: bool = True
    preflight_concurrency: int = Field(default=2, ge=1)
    preflight_wait_seconds: float = Field(default=10.0, ge=0)
    preflight_load_timeout_seconds: float = Field(default=3 * Limits.load_timeout_s, gt=0, le=3600)
    preflight_memory_bytes: int = Field(default=Limits.memory_bytes, gt=0)
    log_json: bool = True
    log_level: LogLevel = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then ``PITAHAYA_*`` variables, then the TOML file of ``PITAHAYA_CONFIG_FILE``."""
        config_file = os.environ.get(CONFIG_FILE_VARIABLE)
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if config_file:
            if not Path(config_file).is_file():
                raise ConfigurationError(f"{CONFIG_FILE_VARIABLE}={config_file} is not a file")
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)),)
        return sources

    @field_validator("rate_limit_per_token", "rate_limit_per_ip")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        parse_rate_limit(value)  # raises ValueError with the offending text
        return value

    @model_validator(mode="after")
    def _database_storage_needs_a_server_database(self) -> Settings:
        """The metadata in a SQLite database would put a second writer beside every publish's own
        transaction (SQLite has one); with SQLite everything is on one host, where files serve."""
        if self.tuf_storage == "database" and self.resolved_database_url.startswith("sqlite"):
            raise ValueError("tuf_storage = 'database' needs a PostgreSQL database_url (with SQLite, keep 'files')")
        return self

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

    @property
    def resolved_mlflow_tracking_uri(self) -> str | None:
        """Where telemetry is forwarded, or None when forwarding is off (see ``mlflow_tracking_uri``)."""
        if not self.mlflow_forwarding:
            return None
        return (
            self.mlflow_tracking_uri
            or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{self.data_dir.resolve() / 'mlflow.db'}"
        )

    @property
    def preflight_dir(self) -> Path:
        """Where pre-flight workers get their own, emptied-after folders (the only place they may write)."""
        return self.registry_dir / "preflight"


def load_settings() -> Settings:
    """Read `Settings` from the environment, explaining a missing or bad variable by name.

    Raises:
        ConfigurationError: a required variable (e.g. ``PITAHAYA_REGISTRY_TOKEN``) is missing or invalid.
    """
    try:
        return Settings()
    except ValidationError as e:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in e.errors()
        )
        raise ConfigurationError(f"invalid registry configuration: {problems}") from e
