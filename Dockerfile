# One image for every voxfleet component: `voxfleet operator`, `voxfleet gateway`, `voxfleet worker` (the Helm
# chart sets the command). The offline models ship inside the installed wheels (Silero VAD and smart-turn v3 in
# pipecat-ai, the PocketSphinx en-us model in pocketsphinx, eSpeak NG's library and data in espeakng-loader), so
# a worker loads them from disk and downloads nothing at start.
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the locked dependencies (cached apart from the code), then voxfleet, into one venv -----------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# requirements/image.lock: every package the operator, gateway and worker extras need, at the versions CI tested,
# each file checked against its hash (`make lock` writes it from pyproject.toml). Every compiled dependency
# publishes manylinux wheels for CPython 3.11 and the few sdists (docopt) are pure Python, so no compiler is
# needed; one that did would fail here (add build-essential to this stage only).
COPY requirements/image.lock requirements/image.lock
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes -r requirements/image.lock
# voxfleet itself from a wheel built here (not an editable install of the source tree), without dependencies:
# the lock brought them all, and `pip check` fails the build if it did not.
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --no-deps --wheel-dir /dist . \
 && /opt/venv/bin/pip install --no-deps /dist/voxfleet-*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip \
 && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/venv/bin/python -m compileall -q -j 0 /opt/venv/lib > /dev/null

# --- runtime: the interpreter, the venv, a non-root user; nothing else -------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="voxfleet" \
      org.opencontainers.image.description="Real-time voice agents for many tenants on Kubernetes: operator, gateway, worker" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 voxfleet \
 && useradd --system --uid 10001 --gid voxfleet --home-dir /home/voxfleet --create-home --shell /usr/sbin/nologin voxfleet
# Bytecode was compiled in the builder: the root file system is read-only at run time. Model hubs are switched
# off so a library that would reach for one fails loudly instead of downloading in a pod.
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    VOXFLEET_LOG_FORMAT=json
USER 10001:10001
WORKDIR /home/voxfleet
EXPOSE 8080
ENTRYPOINT ["voxfleet"]
CMD ["--help"]
