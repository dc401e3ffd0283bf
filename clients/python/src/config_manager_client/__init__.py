"""Python client of the TARS config-manager: a drop-in ``ConfigLibrary`` that
loads a service's configuration over REST, falls back to its verified on-disk
copy or model defaults, and applies only verified, fresh, signed MQTT updates
(``contracts/README.md``, ``contracts/freshness.md``)."""

from .envelope import Envelope, Rejected
from .errors import ConfigClientError, NotInitializedError, NoTrustedKeyError, SettingsError
from .fit import Fit, fit_model
from .freshness import AppliedState, Decision, FreshnessPolicy, check_freshness
from .keys import TrustedKeys, key_id, load_trusted_keys
from .library import ConfigLibrary, ConfigSource, ConfigUpdateCallback, build_model
from .mqtt_url import MqttEndpoint, parse_mqtt_url
from .pipeline import Counters, Outcome, UpdatePipeline
from .report import Reporter, build_report, default_instance_id, parse_instance_id

__all__ = [
    "AppliedState",
    "ConfigClientError",
    "ConfigLibrary",
    "ConfigSource",
    "ConfigUpdateCallback",
    "Counters",
    "Decision",
    "Envelope",
    "Fit",
    "FreshnessPolicy",
    "MqttEndpoint",
    "NoTrustedKeyError",
    "NotInitializedError",
    "Outcome",
    "Rejected",
    "Reporter",
    "SettingsError",
    "TrustedKeys",
    "UpdatePipeline",
    "build_model",
    "build_report",
    "check_freshness",
    "default_instance_id",
    "fit_model",
    "key_id",
    "load_trusted_keys",
    "parse_instance_id",
    "parse_mqtt_url",
]
