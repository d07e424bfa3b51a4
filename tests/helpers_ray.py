"""A local Ray cluster, started with retries: for tests/test_cluster.py and
scripts/ray_bench.py (which puts tests/ on its path)."""
from __future__ import annotations

import logging

import ray


def start_local_ray(num_cpus: int, attempts: int):
    """``ray.init`` of a local cluster of ``num_cpus`` CPUs without a dashboard, the workers'
    logs kept out of this process; its context. Tried up to ``attempts`` times: Ray gives its
    raylet a fixed 30 s to come up, which a loaded 2-core box can miss."""
    for attempt in range(1, attempts + 1):
        try:
            return ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                            log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception for this
            ray.shutdown()
            if attempt == attempts or "timed out during startup" not in str(e):
                raise
    raise ValueError(f"attempts must be >= 1, not {attempts}")
