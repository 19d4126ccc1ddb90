"""Ratings data: sources, splits and the tf.data input pipeline."""
