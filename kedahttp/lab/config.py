"""What every policy shares in a replay, and the policies' names: all the command line needs to parse its
options, without the numeric libraries the replay itself loads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

POLICY_NAMES: Final = ("kedahttp", "fixed-5m", "fixed-10m", "fixed-20m", "http-add-on", "knative", "adaptive")


@dataclass(frozen=True, slots=True)
class LabConfig:
    """What every policy shares in a replay."""

    target_concurrency: float = 100.0
    pod_start_median_seconds: float = 4.0  # image cached, scheduling + container start + readiness
    pod_start_sigma: float = 0.5  # log-normal: p99 about 3.2x the median
    cold_start_timeout_seconds: float = 60.0  # COLD_START_TIMEOUT_SECONDS' default
    max_held_requests: int = 1000  # MAX_HELD_REQUESTS' default
    report_interval_seconds: float = 1.0
    max_replicas: int = 100
    seed: int = 1

    def __post_init__(self) -> None:
        if not (self.target_concurrency > 0 and self.pod_start_median_seconds > 0 and self.pod_start_sigma >= 0
                and self.cold_start_timeout_seconds > 0 and self.max_held_requests > 0
                and self.report_interval_seconds > 0 and self.max_replicas >= 1):
            raise ValueError("lab settings must be positive (pod start sigma may be 0)")
