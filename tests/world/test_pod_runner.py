"""Runner nodes: pods run as real processes bound to their pod IP, like a kubelet would run them."""

import ipaddress
import json
import sys
import time

import httpx
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .waiting import wait_for

DRAIN_SCRIPT = """\
import signal, sys, time
def on_term(*_):
    print("got SIGTERM", flush=True)
    time.sleep(1)  # a draining worker: finish the live call, then exit
    print("drained", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("started", flush=True)
while True:
    time.sleep(1)
"""

STUBBORN_SCRIPT = """\
import signal, time
signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
print("started", flush=True)
while True:
    time.sleep(1)
"""


def _pod(name: str, containers: list[dict], placement: dict, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": containers, **placement, **spec}}


def _is_ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _wait_ready(core, namespace: str, name: str, timeout: float = 30):
    return wait_for(f"pod {namespace}/{name} Ready",
                    lambda: (p := core.read_namespaced_pod(name, namespace)) and _is_ready(p) and p,
                    timeout=timeout, interval=0.02)


def _wait_gone(core, namespace: str, name: str, timeout: float = 30) -> None:
    def gone():
        try:
            core.read_namespaced_pod(name, namespace)
            return False
        except ApiException as e:
            return e.status == 404
    wait_for(f"pod {namespace}/{name} to disappear", gone, timeout=timeout, interval=0.02)


def test_http_server_answers_at_pod_ip_and_turns_ready_from_its_probe(kube, namespace, pods):
    container = {
        "name": "web", "image": "python:3.11",
        "command": ["python", "-m", "http.server", "8080", "--bind", "$(POD_IP)"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        # http.server serves its working dir: the probe's file appears only when the test writes it.
        "workingDir": "/srv",
        "volumeMounts": [{"name": "www", "mountPath": "/srv"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
    }
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, _pod("web", [container], pods.placement("us-east"),
                                                   volumes=[{"name": "www", "emptyDir": {}}]))
        pod = wait_for("web Running with an IP", lambda: (p := core.read_namespaced_pod("web", namespace))
                       and p.status.phase == "Running" and p.status.pod_ip and p)
        ip = pod.status.pod_ip
        node = core.read_node(pod.spec.node_name)
        assert pod.spec.node_name in pods.nodes["us-east"]
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(node.spec.pod_cidr)
        assert pod.status.host_ip == next(a.address for a in node.status.addresses if a.type == "InternalIP")

        # The process really listens at podIP:8080, but the probe's path is missing: not Ready.
        assert wait_for("http.server answering", lambda: httpx.get(f"http://{ip}:8080/", timeout=1)).status_code == 200
        time.sleep(1.5)
        assert not _is_ready(core.read_namespaced_pod("web", namespace))

        (pods.pod_dir(namespace, "web") / "volumes" / "www" / "ready").write_text("ok")
        pod = _wait_ready(core, namespace, "web")
        status = pod.status.container_statuses[0]
        assert status.ready and status.state.running and status.restart_count == 0
    assert "GET /ready" in pods.log(namespace, "web", "web")


def test_pod_turns_ready_soon_after_scheduling(kube, namespace, pods):
    """Measures create -> process running -> Ready through the real scheduler and the pod runner."""
    container = {"name": "web", "image": "python:3.11",
                 "command": ["python", "-m", "http.server", "8080", "--bind", "$(POD_IP)"],
                 "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                 "ports": [{"name": "http", "containerPort": 8080}],
                 "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5}}
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        t0 = time.monotonic()
        core.create_namespaced_pod(namespace, _pod("fast", [container], pods.placement("ap-south")))
        wait_for("fast scheduled", lambda: core.read_namespaced_pod("fast", namespace).spec.node_name, interval=0.01)
        scheduled = time.monotonic() - t0
        _wait_ready(core, namespace, "fast")
        ready = time.monotonic() - t0
    print(f"\n[measure] pod created -> scheduled {scheduled:.3f} s -> process Ready {ready:.3f} s "
          f"(scheduled -> Ready {ready - scheduled:.3f} s)", file=sys.stderr)
    assert ready < 10


def test_delete_sends_sigterm_and_waits_for_the_process_to_drain(kube, namespace, pods):
    container = {"name": "worker", "image": "voxfleet/worker:test",
                 "command": ["python", "/scripts/drain.py"],
                 "volumeMounts": [{"name": "scripts", "mountPath": "/scripts"}],
                 "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "scripts"},
                                                      "data": {"drain.py": DRAIN_SCRIPT}})
        core.create_namespaced_pod(namespace, _pod(
            "worker", [container], pods.placement("eu-west"), terminationGracePeriodSeconds=10,
            volumes=[{"name": "scripts", "configMap": {"name": "scripts"}}]))
        _wait_ready(core, namespace, "worker")
        wait_for("script started", lambda: "\nstarted\n" in pods.log(namespace, "worker", "worker"))

        t0 = time.monotonic()
        core.delete_namespaced_pod("worker", namespace)
        # While draining the pod still exists, terminating and no longer Ready.
        terminating = wait_for("pod marked not Ready", lambda: (p := core.read_namespaced_pod("worker", namespace))
                               and not _is_ready(p) and p, interval=0.02)
        assert terminating.metadata.deletion_timestamp is not None
        _wait_gone(core, namespace, "worker")
        took = time.monotonic() - t0
    log = pods.log(namespace, "worker", "worker")
    assert log.index("got SIGTERM") < log.index("drained"), log
    assert 1.0 <= took < 8, f"pod vanished after {took:.2f} s; expected after its 1 s drain"


def test_grace_period_ends_with_sigkill(kube, namespace, pods):
    container = {"name": "stubborn", "image": "x", "command": ["python", "-c", STUBBORN_SCRIPT]}
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, _pod("stubborn", [container], pods.placement("us-east"),
                                                   terminationGracePeriodSeconds=1))
        _wait_ready(core, namespace, "stubborn")
        wait_for("script started", lambda: "\nstarted\n" in pods.log(namespace, "stubborn", "stubborn"))
        pid = int(core.read_namespaced_pod("stubborn", namespace).status.container_statuses[0]
                  .container_id.rsplit("/", 1)[1])
        t0 = time.monotonic()
        core.delete_namespaced_pod("stubborn", namespace)
        _wait_gone(core, namespace, "stubborn")
        took = time.monotonic() - t0
    assert "ignoring SIGTERM" in pods.log(namespace, "stubborn", "stubborn")
    assert 1.0 <= took < 5, took
    wait_for(f"process {pid} gone", lambda: not _alive(pid), timeout=5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


ENV_SCRIPT = """\
import json, os, pathlib, sys
files = {p: pathlib.Path(p).read_text() for p in sys.argv[1:] if not p.startswith("--")}
flag = next(a for a in sys.argv[1:] if a.startswith("--secret="))
files["flag"] = pathlib.Path(flag.split("=", 1)[1]).read_text()
keys = ["GREETING", "TOKEN", "POD_NAME", "POD_NS", "APP", "NODE", "POD_IP", "COMBINED", "ESCAPED", "CM_LEVEL",
        "CM_greeting", "SECRET_FILE", "CPU"]
print(json.dumps({"env": {k: os.environ.get(k) for k in keys}, "files": files, "cwd": os.getcwd()}))
"""


def test_config_maps_secrets_and_downward_api_reach_env_and_files(kube, namespace, pods):
    container = {
        "name": "probe-env", "image": "x",
        "command": ["python", "-c", ENV_SCRIPT],
        "args": ["/etc/cfg/greeting", "/etc/podinfo/labels", "/etc/podinfo/name", "--secret=/etc/secret/token"],
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "COMBINED", "value": "$(GREETING)-$(POD_NAME)-$(UNDEFINED)"},
            {"name": "ESCAPED", "value": "$$(GREETING)"},
            {"name": "SECRET_FILE", "value": "/etc/secret/token"},
            {"name": "MISSING_OK", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": True}}},
        ],
        "resources": {"limits": {"cpu": "2"}},
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "creds", "mountPath": "/etc/secret"},
                         {"name": "podinfo", "mountPath": "/etc/podinfo"}],
    }
    volumes = [
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "creds", "secret": {"secretName": "creds"}},
        {"name": "podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
    ]
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        # The pod comes first: the runner waits (CreateContainerConfigError) until its config exists.
        core.create_namespaced_pod(namespace, _pod("envcheck", [container], pods.placement("us-east"),
                                                   restartPolicy="Never", volumes=volumes))
        waiting = wait_for("CreateContainerConfigError", lambda: (
            (s := core.read_namespaced_pod("envcheck", namespace).status.container_statuses)
            and s[0].state.waiting and s[0].state.waiting.reason == "CreateContainerConfigError" and s[0]))
        assert "not found" in waiting.state.waiting.message
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"},
                                                      "data": {"greeting": "hello", "LEVEL": "debug"}})
        core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}})
        pod = wait_for("envcheck Succeeded", lambda: (p := core.read_namespaced_pod("envcheck", namespace))
                       and p.status.phase == "Succeeded" and p)
        assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    out = json.loads(pods.log(namespace, "envcheck", "probe-env").strip().splitlines()[-1])
    env, files = out["env"], out["files"]
    volumes_dir = pods.pod_dir(namespace, "envcheck") / "volumes"
    assert env == {
        "GREETING": "hello", "TOKEN": "s3cret", "POD_NAME": "envcheck", "POD_NS": namespace, "APP": "envcheck",
        "NODE": pod.spec.node_name, "POD_IP": pod.status.pod_ip, "COMBINED": "hello-envcheck-$(UNDEFINED)",
        "ESCAPED": "$(GREETING)", "CM_LEVEL": "debug", "CM_greeting": "hello", "CPU": "2",
        # Paths under a mountPath are rewritten to where the volume really is.
        "SECRET_FILE": str(volumes_dir / "creds" / "token"),
    }
    labels = files.pop(str(volumes_dir / "podinfo" / "labels")).splitlines()
    assert files == {
        str(volumes_dir / "cfg" / "greeting"): "hello",
        str(volumes_dir / "podinfo" / "name"): "envcheck",
        "flag": "s3cret",
    }
    # v1.36's binding copies the node's topology labels onto the pod (PodTopologyLabelsAdmission).
    assert 'app="envcheck"' in labels and 'topology.kubernetes.io/region="us-east"' in labels


def test_exited_container_restarts_with_backoff(kube, namespace, pods):
    container = {"name": "crash", "image": "x", "command": ["python", "-c", "import sys; print('run'); sys.exit(3)"]}
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, _pod("crash", [container], pods.placement("eu-west")))
        status = wait_for("two restarts", lambda: (
            (s := core.read_namespaced_pod("crash", namespace).status.container_statuses)
            and s[0].restart_count >= 2 and s[0]), timeout=20)
    assert status.last_state.terminated.exit_code == 3
    assert pods.log(namespace, "crash", "crash").count("run") >= 3


def test_pod_reaches_the_api_as_its_service_account(kube, namespace, pods):
    script = ("from kubernetes import client, config; config.load_config(); "
              "r = client.AuthenticationV1Api().create_self_subject_review("
              "{'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview'}); "
              "print(r.status.user_info.username)")
    container = {"name": "whoami", "image": "x", "command": ["python", "-c", script]}
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, _pod("whoami", [container], pods.placement("us-east"),
                                                   restartPolicy="Never"))
        wait_for("whoami finished", lambda: core.read_namespaced_pod("whoami", namespace).status.phase
                 in ("Succeeded", "Failed"))
        phase = core.read_namespaced_pod("whoami", namespace).status.phase
    log = pods.log(namespace, "whoami", "whoami")
    assert phase == "Succeeded", log
    assert f"system:serviceaccount:{namespace}:default" in log
