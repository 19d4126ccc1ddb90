"""Packaging for keras-autorec."""

import re
from pathlib import Path

from setuptools import find_packages, setup

version = re.search(r'__version__ = "([^"]+)"',
                    Path("keras_autorec/__init__.py").read_text()).group(1)

setup(
    name="keras-autorec",
    version=version,
    description="AutoRec (Sedhain et al., WWW 2015) for TensorFlow/Keras, ready for TF Serving",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["keras_autorec", "keras_autorec.*", "pipelines",
                                    "pipelines.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "tensorflow-datasets>=4.9.10,<5",
        # The TFDS movielens builder imports it without declaring it.
        "importlib_resources",
        "numpy>=1.26",
        "absl-py>=2.1",
        # Keras' TensorBoard callback writes the logs in --model_dir.
        "tensorboard>=2.21,<2.22",
        # `python -m keras_autorec.tune`; its default Bayesian oracle needs scikit-learn.
        "keras-tuner>=1.4.7,<1.5",
        "scikit-learn>=1.3",
        # Implicit feedback (keras_autorec.implicit): sparse rows and keras-rs's NDCG.
        "scipy>=1.10",
        "keras-rs>=0.4,<0.5",
    ],
    extras_require={
        "serving": ["tensorflow-serving-api>=2.21,<2.22", "grpcio>=1.60"],
        "plots": ["matplotlib>=3.8"],
        # `python -m pipelines.kubeflow_runner`: compiles the pipeline for Kubeflow Pipelines.
        "kubeflow": ["kfp>=2.17,<3"],
        "test": ["pytest>=8", "tensorflow-serving-api>=2.21,<2.22", "grpcio>=1.60",
                 "matplotlib>=3.8", "psutil>=5.9", "hypothesis>=6.100", "cryptography>=42",
                 "kfp>=2.17,<3"],
    },
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
