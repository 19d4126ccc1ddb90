"""keras-autorec: AutoRec (Sedhain et al., WWW 2015) in TensorFlow/Keras."""

__version__ = "0.1.0"
