"""What every component's /metrics carries besides its own figures: `voxfleet_build_info{component, version,
python_version} 1` and prometheus_client's standard process (CPU, memory, open files, start time), platform
(python_info) and garbage-collector collectors.

Each component keeps its own registry (several gateways or operators run in one test process), so this adds the
collectors to the registry it is given rather than to prometheus_client's global one.
"""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

BUILD_INFO = "voxfleet_build_info"


def voxfleet_version() -> str:
    """The installed voxfleet distribution's version (the image installs the package, so it is the image's)."""
    try:
        return metadata.version("voxfleet")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def register_standard_metrics(registry: CollectorRegistry, component: str) -> None:
    """Add build info and the process, platform and GC collectors to `registry`, once per registry."""
    # prometheus_client adds a `<name>_created` gauge beside every counter and histogram series. Our /metrics
    # speak the plain text format, in which Prometheus stores those as ordinary series: they would double a
    # worker's series per tenant, agent and region and tell nothing a dashboard uses. (Process-wide switch.)
    disable_created_metrics()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    info = Gauge(BUILD_INFO, "Always 1; the labels say which voxfleet build and Python run this component.",
                 ["component", "version", "python_version"], registry=registry)
    info.labels(component=component, version=voxfleet_version(), python_version=platform.python_version()).set(1)
