# The pipeline image: this repository on the pinned dependencies `make test` uses
# (requirements.lock, Python 3.10). Every Kubeflow step runs in it, and Dataflow workers too.
#   docker build -t <registry>/adclick-pipeline:<tag> . && docker push <registry>/adclick-pipeline:<tag>
#   python kubeflow_runner.py --image <registry>/adclick-pipeline:<tag> ...
FROM apache/beam_python3.10_sdk:2.59.0 AS beam

FROM python:3.10.13-slim-bookworm
# Beam's worker boot program, so Dataflow can run this image (--sdk_container_image);
# Kubeflow ignores the entrypoint and starts each step with its own command.
COPY --from=beam /opt/apache/beam /opt/apache/beam
WORKDIR /pipeline
COPY requirements.lock .
RUN pip install --no-cache-dir pip==24.2 \
    && pip install --no-cache-dir -r requirements.lock
COPY . .
# kubeflow_runner.IMAGE_REPO_ROOT is /pipeline; TFX 1.16 needs Keras 2 before TF loads.
ENV PYTHONPATH=/pipeline \
    TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=1
ENTRYPOINT ["/opt/apache/beam/boot"]
