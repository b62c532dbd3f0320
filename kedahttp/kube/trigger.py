"""The ScaledObject trigger's metadata: its keys and defaults, shared by the object builder and the scaler.

The controller writes these keys into the ``external-push`` trigger of every ScaledObject it owns
(``httpapp.build_scaled_object``); KEDA passes them, as strings, to the scaler, which parses them
(``scaler.metrics.parse_trigger``). Both sides read the names and defaults from here, so they cannot
drift. The trigger is part of a Kubernetes object, so the module lives in ``kube/``, which the scaler
may import (it sits above it); it is plain constants, no client: importing it loads nothing else.
"""

from __future__ import annotations

from typing import Final

TRIGGER_TYPE: Final = "external-push"
LEGACY_TRIGGER_TYPE: Final = "external"  # the polling trigger; read back, never written

# Metadata keys, as written in the trigger. KEDA itself reads scalerAddress; the scaler reads the rest.
SCALER_ADDRESS_KEY: Final = "scalerAddress"
BACKEND_KEY: Final = "backend"  # namespace/name; defaults to the ScaledObject's own
TARGET_CONCURRENCY_KEY: Final = "targetConcurrency"
TARGET_REQUEST_RATE_KEY: Final = "targetRequestRate"
RATE_WINDOW_KEY: Final = "rateWindowSeconds"
ACTIVITY_WINDOW_KEY: Final = "activityWindowSeconds"
KEEP_ALIVE_KEY: Final = "keepAlive"  # "window" (default) or "adaptive" (scaler/keepalive.py)
KEEP_ALIVE_CHOICES: Final = ("window", "adaptive")

SCALER_KEYS: Final = (BACKEND_KEY, TARGET_CONCURRENCY_KEY, TARGET_REQUEST_RATE_KEY, RATE_WINDOW_KEY,
                      ACTIVITY_WINDOW_KEY, KEEP_ALIVE_KEY)
KEYS: Final = (SCALER_ADDRESS_KEY, *SCALER_KEYS)
# KEDA's own keys for external scalers (the address and its TLS parameters, from the trigger or its
# TriggerAuthentication), which KEDA passes on in the same metadata: allowed, not read (issue 14).
KEDA_KEYS: Final = (SCALER_ADDRESS_KEY, "caCert", "tlsClientCert", "tlsClientKey", "tlsCertFile", "unsafeSsl")
# What the scaler accepts in trigger metadata; any other key is refused naming the closest of these.
KNOWN_KEYS: Final = (*SCALER_KEYS, *KEDA_KEYS)

# The metrics a trigger serves, by the name GetMetricSpec gives them (KEDA prefixes them with "sN-" for the
# HPA); the controller asks for the concurrency one to show an app's in-flight requests (kube/live.py).
CONCURRENCY_METRIC: Final = "concurrency"
REQUEST_RATE_METRIC: Final = "requestrate"

# What the scaler assumes for a key the trigger leaves out (targetConcurrency only when no
# targetRequestRate is given either); an HTTPApp's spec.scaling and the apps API default to the same.
DEFAULT_TARGET_CONCURRENCY: Final = 100.0
DEFAULT_RATE_WINDOW_SECONDS: Final = 60
DEFAULT_ACTIVITY_WINDOW_SECONDS: Final = 60


def format_number(value: float) -> str:
    """Trigger metadata are strings: 100.0 -> "100", 2.5 -> "2.5"."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(float(value))
