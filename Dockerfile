# One image for every step of the Kubeflow pipeline (pipelines/kubeflow_runner.py) and for the
# workers of a multi-worker training job (python -m keras_autorec.train --strategy=multi_worker).
# Build and push: see BUILD.md, "Docker image".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/keras-autorec
# setup.py reads README.md and keras_autorec/__init__.py.
COPY setup.py README.md ./
COPY keras_autorec ./keras_autorec
COPY pipelines ./pipelines
# kubeflow: the steps run the KFP executor (kfp), which the image must hold (the spec does not
# pip-install it at run time); plots: the pipeline's StatisticsGen and Trainer draw PNGs.
RUN pip install ".[kubeflow,plots]"
