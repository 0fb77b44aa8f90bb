"""`helm test`: the voxfleet gateway answers GET /healthz, through its Service and (optionally) at every Ready pod.

Runs in the voxfleet image with nothing but the standard library and the kubernetes client, retrying until the
deadline so a test started right after an install waits for the rollout instead of failing it.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

DEADLINE = time.monotonic() + float(os.environ.get("CHECK_TIMEOUT_SECONDS", "60"))


def healthz(url: str) -> str | None:
    """None when the URL answers 200, otherwise what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read(2048).decode(errors="replace")
            return None if response.status == 200 else f"HTTP {response.status}: {body}"
    except (urllib.error.URLError, OSError) as error:
        return str(error)


def ready_pod_urls() -> list[str]:
    from kubernetes import client, config

    config.load_config()  # KUBECONFIG when set, else the pod's service account
    pods = client.CoreV1Api().list_namespaced_pod(os.environ["POD_NAMESPACE"],
                                                  label_selector=os.environ["GATEWAY_SELECTOR"]).items
    port = os.environ["GATEWAY_PORT"]
    ready = [p for p in pods if p.status.pod_ip and not p.metadata.deletion_timestamp
             and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
    return [f"http://{p.status.pod_ip}:{port}/healthz" for p in ready]


def check_once() -> list[str]:
    problems = []
    if os.environ.get("GATEWAY_SERVICE_URL"):
        url = os.environ["GATEWAY_SERVICE_URL"].rstrip("/") + "/healthz"
        problem = healthz(url)
        if problem:
            problems.append(f"{url}: {problem}")
    if os.environ.get("CHECK_PODS") == "true":
        urls = ready_pod_urls()
        if not urls:
            problems.append("no Ready gateway pod")
        problems += [f"{url}: {p}" for url in urls if (p := healthz(url))]
    return problems


def main() -> int:
    while True:
        try:
            problems = check_once()
        except Exception as error:  # noqa: BLE001 - any failure is retried until the deadline, then reported
            problems = [f"{type(error).__name__}: {error}"]
        if not problems:
            print(json.dumps({"gateway": "healthy"}))
            return 0
        if time.monotonic() > DEADLINE:
            print(json.dumps({"gateway": "unhealthy", "problems": problems}), file=sys.stderr)
            return 1
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
