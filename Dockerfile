# syntax=docker/dockerfile:1
# The pipeline image: this repository on the pinned dependencies `make test` uses
# (requirements.lock, Python 3.10). Every Kubeflow step runs in it, and Dataflow workers too.
#   docker build -t <registry>/adclick-pipeline:<tag> . && docker push <registry>/adclick-pipeline:<tag>
#   python kubeflow_runner.py --image <registry>/adclick-pipeline:<tag> ...
ARG PYTHON_IMAGE=python:3.10.13-slim-bookworm

FROM apache/beam_python3.10_sdk:2.59.0 AS beam

# Wheels for the pinned packages PyPI has only as source archives, built with a compiler that
# stays in this stage. tests/test_image_lock.py asks PyPI that every other pin of
# requirements.lock has a wheel for this Python and platform: add a package here when it fails.
FROM ${PYTHON_IMAGE} AS wheels
ARG SOURCE_BUILT_PACKAGES="pyfarmhash crcmod dill docopt google-apitools hdfs kfp kfp-server-api pyjsparser rouge_score"
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.lock .
RUN pip install --no-cache-dir pip==24.2 \
    && pip wheel --no-cache-dir --no-deps --constraint requirements.lock --wheel-dir /wheels \
       ${SOURCE_BUILT_PACKAGES}

FROM ${PYTHON_IMAGE}
# Beam's worker boot program, so Dataflow can run this image (--sdk_container_image);
# Kubeflow ignores the entrypoint and starts each step with its own command.
COPY --from=beam /opt/apache/beam /opt/apache/beam
WORKDIR /pipeline
COPY requirements.lock .
# Binaries only: PyPI's wheels plus the ones built above (mounted, so they add no layer).
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir pip==24.2 \
    && pip install --no-cache-dir --only-binary=:all: --find-links /wheels -r requirements.lock
COPY . .
# kubeflow_runner.IMAGE_REPO_ROOT is /pipeline. TFX 1.16 needs Keras 2 before TF loads: the
# code sets it in models/__init__.py, but here TFX's executor entrypoint and Beam's workers
# import TensorFlow first.
ENV PYTHONPATH=/pipeline \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=1
# A numeric non-root user, so Kubernetes' runAsNonRoot can check it; the code stays root-owned.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin pipeline
USER 10001
ENTRYPOINT ["/opt/apache/beam/boot"]
