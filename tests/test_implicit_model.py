"""Tests for keras_autorec.implicit.model and keras_autorec.implicit.fit."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import sparse

from keras_autorec.implicit import fit, losses, model as model_lib

ROWS = sparse.csr_matrix(np.array([[1, 0, 1, 0, 0, 1], [0, 1, 0, 0, 0, 0]], dtype=np.float32))


def test_sparse_call_matches_the_dense_formula():
  model = model_lib.PlaylistAutoRec(6, hidden_units=(3,), input_dropout=0.5)
  scores = model(fit.to_sparse_tensor(ROWS), training=False).numpy()
  (kernel, bias), = [(k.numpy(), b.numpy()) for k, b in model.encoder_params]
  dense = ROWS.toarray()
  normalized = dense / np.linalg.norm(dense, axis=1, keepdims=True)
  expected = np.tanh(normalized @ kernel + bias) @ model.output_kernel.numpy()
  np.testing.assert_allclose(scores, expected + model.output_bias.numpy(), rtol=1e-5, atol=1e-6)


def test_input_dropout_drops_about_the_rate_and_only_in_training():
  inputs = fit.to_sparse_tensor(sparse.csr_matrix(np.ones((50, 200), dtype=np.float32)))
  kept = model_lib.drop_inputs(inputs, 0.3, seed=1).values.shape[0] / 10_000
  assert kept == pytest.approx(0.7, abs=0.02)
  model = model_lib.PlaylistAutoRec(6, hidden_units=(3,), input_dropout=0.9)
  sparse_rows = fit.to_sparse_tensor(ROWS)
  np.testing.assert_array_equal(model(sparse_rows).numpy(), model(sparse_rows).numpy())


def test_config_round_trip():
  model = model_lib.PlaylistAutoRec(6, hidden_units=(4, 2), loss="weighted_squared",
                                    zero_weight=0.2)
  clone = model_lib.PlaylistAutoRec.from_config(model.get_config())
  assert (clone.hidden_units, clone.loss_name, clone.zero_weight) == ((4, 2),
                                                                      "weighted_squared", 0.2)


def test_l2_weight_adds_the_kernel_penalty():
  plain = model_lib.PlaylistAutoRec(6, hidden_units=(3,), input_dropout=0.0)
  penalised = model_lib.PlaylistAutoRec(6, hidden_units=(3,), input_dropout=0.0, l2_weight=0.5)
  penalised.set_weights(plain.get_weights())
  rows = fit.to_sparse_tensor(ROWS)
  kernels = [plain.encoder_params[0][0], plain.output_kernel]
  penalty = 0.5 * sum(float(tf.reduce_sum(tf.square(k))) for k in kernels)
  assert float(penalised.compute_row_loss(rows)) == pytest.approx(
      float(plain.compute_row_loss(rows)) + penalty, rel=1e-5)


def test_fit_learns_blocks_and_keeps_the_best_epoch():
  # Two blocks of items; rows hold a random half of one block.
  rng = np.random.default_rng(0)
  dense = np.zeros((200, 20), dtype=np.float32)
  for row in range(200):
    block = row % 2
    dense[row, block * 10 + rng.choice(10, size=5, replace=False)] = 1.0
  train = sparse.csr_matrix(dense)
  calls = []

  def validate(model):
    scores = fit.predict_scores(model, train[:2])
    calls.append(scores)
    return len(calls) == 2  # the second epoch is the "best" one

  model, history = fit.fit(train, fit.FitConfig(hidden_units=(8,), epochs=6, patience=3,
                                                learning_rate=0.01, batch_size=32), validate)
  assert [record["epoch"] for record in history] == [1, 2, 3, 4, 5]  # stopped after patience
  np.testing.assert_allclose(fit.predict_scores(model, train[:2]), calls[1], rtol=1e-6)
  trained, _ = fit.fit(train, fit.FitConfig(hidden_units=(8,), epochs=8, learning_rate=0.03,
                                            batch_size=32))
  scores = fit.predict_scores(trained, train[:2])
  # Row 0 is block 0, row 1 block 1: each scores its own block's items higher.
  assert scores[0, :10].mean() > scores[0, 10:].max()
  assert scores[1, 10:].mean() > scores[1, :10].max()


def test_weighted_squared_row_loss_is_the_dense_loss_of_the_scores():
  model = model_lib.PlaylistAutoRec(6, hidden_units=(3,), input_dropout=0.0,
                                    loss="weighted_squared", zero_weight=0.2)
  rows = fit.to_sparse_tensor(ROWS)
  dense = losses.weighted_squared(ROWS.toarray(), model(rows), 0.2)
  assert float(model.compute_row_loss(rows)) == pytest.approx(float(dense), rel=1e-5)
