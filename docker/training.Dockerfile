# syntax=docker/dockerfile:1
#
# The training image: Prefect flow runs (fine-tuning on CUDA torch), the Prefect
# Kubernetes worker, the setup Job and the MinIO -> Prefect event adapter
# (k8s/base/prefect/*, docker-compose.yaml). Build from the repository root:
#
#   docker build -f docker/training.Dockerfile -t speechloop-training:0.1.0 .
#
# or with a cluster builder (kaniko, buildkit), same context and file. torch comes from
# the PyTorch CUDA 12.8 index (the GPU nodes need only the NVIDIA driver and device
# plugin); everything else is the repository's requirements.lock, plus
# prefect[kubernetes] for the worker (prefect-kubernetes is not in the lock).
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    SPEECHLOOP_ROOT=/opt/speechloop \
    PYTHONPATH=/opt/speechloop \
    SPEECHLOOP_WORK_DIR=/var/lib/speechloop/work

# libsndfile: soundfile; libgomp: onnxruntime / torch CPU kernels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/speechloop
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --index-url "${TORCH_INDEX}" torch==2.9.1 torchaudio==2.9.1 \
    && pip install -r requirements.lock \
    && pip install "prefect[kubernetes]==3.8.8"

COPY speechloop ./speechloop
COPY flows ./flows
COPY prefect.yaml ./
RUN pip install --no-deps . && python -c "import speechloop, flows, torch"

# Non-root, numeric (runAsNonRoot checks it); writes go to mounted volumes only.
RUN useradd --uid 1000 --gid 0 --no-create-home --home-dir /tmp speechloop \
    && mkdir -p /var/lib/speechloop && chown 1000:0 /var/lib/speechloop
USER 1000
CMD ["prefect", "flow-run", "execute"]
