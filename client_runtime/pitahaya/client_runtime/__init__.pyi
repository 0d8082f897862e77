from .config import RuntimeConfig as RuntimeConfig
from .containment import (
    ContainedPackage as ContainedPackage,
    ISOLATION_MODES as ISOLATION_MODES,
    Isolation as Isolation,
    Limits as Limits,
    preflight as preflight,
)
from .decisions import Decision as Decision
from .errors import (
    CallError as CallError,
    CallTimeoutError as CallTimeoutError,
    ClientRuntimeError as ClientRuntimeError,
    FeatureCodeError as FeatureCodeError,
    InferenceError as InferenceError,
    LoadTimeoutError as LoadTimeoutError,
    MetadataExpiredError as MetadataExpiredError,
    ModelLoadError as ModelLoadError,
    PackageError as PackageError,
    PackageFormatError as PackageFormatError,
    ReleaseError as ReleaseError,
    ResourceLimitError as ResourceLimitError,
    SandboxCrashError as SandboxCrashError,
    SandboxUnavailableError as SandboxUnavailableError,
    SelfTestError as SelfTestError,
    UpdateDownloadError as UpdateDownloadError,
    UpdateError as UpdateError,
    UpdateVerificationError as UpdateVerificationError,
    WorkerLostError as WorkerLostError,
)
from .events import (
    Candidate as Candidate,
    SESSION_GAP_S as SESSION_GAP_S,
    UNKNOWN as UNKNOWN,
    VIEW_FIELDS as VIEW_FIELDS,
    View as View,
)
from .item_stats import (
    ITEM_FIELDS as ITEM_FIELDS,
    ItemStats as ItemStats,
    item_stats_at as item_stats_at,
    with_item_stats as with_item_stats,
)
from .extractor import (
    FeatureExtractor as FeatureExtractor,
    load_feature_code as load_feature_code,
)
from .hooks import (
    CompositeHooks as CompositeHooks,
    Hooks as Hooks,
    InferenceEvent as InferenceEvent,
    UpdateEvent as UpdateEvent,
)
from .loader import BoundInference as BoundInference, LoadedPackage as LoadedPackage
from .local_updater import LocalArchiveUpdater as LocalArchiveUpdater
from .package import (
    ARCHIVE_SUFFIX as ARCHIVE_SUFFIX,
    FEATURES_FILE as FEATURES_FILE,
    MODEL_FILE as MODEL_FILE,
    Manifest as Manifest,
    Package as Package,
    SELFTEST_FILE as SELFTEST_FILE,
    TensorSpec as TensorSpec,
    build_archive as build_archive,
    file_entry as file_entry,
    read_package as read_package,
    target_path as target_path,
    validate_quantiles as validate_quantiles,
    validate_scene_name as validate_scene_name,
)
from .parity_set import (
    PARITY_DIR as PARITY_DIR,
    QUANTILES_DIR as QUANTILES_DIR,
    QUANTILES_METADATA as QUANTILES_METADATA,
    ParitySet as ParitySet,
)
from .policy import (
    FIXED_BYTES as FIXED_BYTES,
    FIXED_COUNT as FIXED_COUNT,
    PolicyKnobs as PolicyKnobs,
    PreloadItem as PreloadItem,
    PreloadPlan as PreloadPlan,
    PreloadPlanner as PreloadPlanner,
    fixed_plan as fixed_plan,
    model_plan as model_plan,
)
from .refresher import Updater as Updater
from .releases import (
    Release as Release,
    Targeting as Targeting,
    release_target_path as release_target_path,
    rollout_bucket as rollout_bucket,
)
from .runtime import Runtime as Runtime
from .scene import Scene as Scene
from .state import Mode as Mode
from .telemetry import (
    LATENCY_US_BOUNDS as LATENCY_US_BOUNDS,
    TelemetryConfig as TelemetryConfig,
    TelemetryReporter as TelemetryReporter,
)
from .updater import PackageUpdater as PackageUpdater, UpdateCheck as UpdateCheck

__all__: list[str]
