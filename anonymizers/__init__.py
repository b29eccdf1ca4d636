"""Pure anonymisation units, the policy model and the statistics engine.

The public face: `Pipeline` (the chain of units, `anonymizers.chain`), `Policy` with
`load_policy`, `parse_policy` and `default_policy` (`anonymizers.policy`), the outcomes
`Anonymized` and `Dropped`, and the errors (`anonymizers.exceptions`). Sub-packages:
`anonymizers.policy` (the one policy model and its checks), `anonymizers.stats` (windows,
aggregation, suppression, noise, release) and `anonymizers.geo` (the geolocation database).

Nothing in this package touches Kafka, the environment or the network; the only I/O is
opening a geolocation database and reading a policy file, each named by path
(tests/anonymizers/test_purity.py enforces it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anonymizers.chain import Pipeline
    from anonymizers.exceptions import (
        AggregationError,
        AnonstreamError,
        AnonymizerError,
        ConsentRecordError,
        GeoDatabaseError,
        KeyMaterialError,
        PolicyError,
    )
    from anonymizers.outcome import Anonymized, Dropped, Outcome
    from anonymizers.policy import Policy, default_policy, load_policy, parse_policy

# Loaded on first use (PEP 562), so that importing one light module of the package (its
# exceptions, say, as the command line does at start-up) does not import the whole chain.
_PUBLIC = {
    "Pipeline": "anonymizers.chain",
    "AggregationError": "anonymizers.exceptions",
    "AnonstreamError": "anonymizers.exceptions",
    "AnonymizerError": "anonymizers.exceptions",
    "ConsentRecordError": "anonymizers.exceptions",
    "GeoDatabaseError": "anonymizers.exceptions",
    "KeyMaterialError": "anonymizers.exceptions",
    "PolicyError": "anonymizers.exceptions",
    "Anonymized": "anonymizers.outcome",
    "Dropped": "anonymizers.outcome",
    "Outcome": "anonymizers.outcome",
    "Policy": "anonymizers.policy",
    "default_policy": "anonymizers.policy",
    "load_policy": "anonymizers.policy",
    "parse_policy": "anonymizers.policy",
}
__all__ = [
    "AggregationError",
    "AnonstreamError",
    "Anonymized",
    "AnonymizerError",
    "ConsentRecordError",
    "Dropped",
    "GeoDatabaseError",
    "KeyMaterialError",
    "Outcome",
    "Pipeline",
    "Policy",
    "PolicyError",
    "default_policy",
    "load_policy",
    "parse_policy",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'anonymizers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
