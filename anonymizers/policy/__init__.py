"""The privacy team's policy: one frozen model, every problem reported in one pass.

`load_policy(path)` / `parse_policy(mapping)` give a checked `Policy` or raise `PolicyError`
listing every problem; `default_policy()` is the shipped default. The model is
`anonymizers.policy.model`, the rules that span settings `anonymizers.policy.checks`.
"""

from anonymizers.policy.issues import PolicyIssue
from anonymizers.policy.load import default_policy, load_policy, parse_policy, policy_issues
from anonymizers.policy.model import (
    DURATION_ALLOWED,
    DURATION_PATTERN,
    MAX_CELL_BOUND,
    SCHEMA_VERSION,
    SECTIONS,
    AggregationConfig,
    ConsentConfig,
    ContextConfig,
    GeoConfig,
    IdentifiersConfig,
    KeysConfig,
    MetricConfig,
    OutputConfig,
    Policy,
    ReleaseConfig,
    SearchTermsConfig,
    UrlsConfig,
    duration_seconds,
)
from anonymizers.policy.render import policy_json_schema, render_default_policy_toml

__all__ = [
    "DURATION_ALLOWED",
    "DURATION_PATTERN",
    "MAX_CELL_BOUND",
    "SCHEMA_VERSION",
    "SECTIONS",
    "AggregationConfig",
    "ConsentConfig",
    "ContextConfig",
    "GeoConfig",
    "IdentifiersConfig",
    "KeysConfig",
    "MetricConfig",
    "OutputConfig",
    "Policy",
    "PolicyIssue",
    "ReleaseConfig",
    "SearchTermsConfig",
    "UrlsConfig",
    "default_policy",
    "duration_seconds",
    "load_policy",
    "parse_policy",
    "policy_issues",
    "policy_json_schema",
    "render_default_policy_toml",
]
