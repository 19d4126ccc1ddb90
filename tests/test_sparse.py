"""The sparse execution path: same objective and gradients as the dense model, same training."""

from __future__ import annotations

import dataclasses
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import num_logical_cpus
from keras_autorec import training
from keras_autorec.data.layout import build_layout
from keras_autorec.optimizers import make_optimizer
from keras_autorec.training.sparse import blocks as sparse_blocks
from keras_autorec.training.sparse import kernels
from keras_autorec.training.sparse import trainer as sparse_trainer
from keras_autorec.training.sparse.objective import l2_penalty, squared_error_and_gradients

ML100K_FILE = "/work/shared/data/ml-100k/u.data"
# Column densities that put no column, about half of them and every column in the decoder's
# GEMM part.
ALL_SPARSE, HYBRID, ALL_DENSE = math.inf, 0.27, -1.0


def dense_loss_and_gradients(model, rows):
  """The reference: the Keras model on the dense matrix, through `AutoRec.compute_loss`."""
  ratings = tf.constant(rows.to_dense())
  mask = tf.cast(ratings != 0, tf.float32)
  with tf.GradientTape() as tape:
    loss = model.compute_loss(y=ratings, y_pred=model(ratings), sample_weight=mask)
  return loss, tape.gradient(loss, model.trainable_variables)


def sparse_loss_and_gradients(model, blocks: list[sparse_blocks.SparseBlock],
                              compute_dtype: tf.DType = tf.float32) -> tuple[tf.Tensor, list]:
  """The full objective over `blocks` (mean squared error + L2) and its gradients."""
  count = tf.constant(float(sum(block.nnz for block in blocks)))
  total, gradients = tf.constant(0.0), None
  for block in blocks:
    squared_error, block_gradients = squared_error_and_gradients(
        model, block.structure(), count, 1.0 / len(blocks), compute_dtype)
    total += squared_error
    gradients = block_gradients if gradients is None else [
        a + b for a, b in zip(gradients, block_gradients)]
  return total / count + l2_penalty(model), gradients


def relative_error(expected, actual) -> float:
  return float(tf.reduce_max(tf.abs(expected - actual)) / tf.reduce_max(tf.abs(expected)))


def model_config(**overrides) -> training.ModelConfig:
  return dataclasses.replace(training.ModelConfig(hidden_units=(16,), l2_weight=1e-2,
                                                  init_stddev=0.3), **overrides)


@pytest.mark.parametrize("item_based", [True, False])
@pytest.mark.parametrize("encoder, decoder, hidden_units", [
    ("sigmoid", "identity", (16,)), ("tanh", "sigmoid", (16,)), ("relu", "elu", (16, 8))])
@pytest.mark.parametrize("dense_density", [ALL_SPARSE, HYBRID, ALL_DENSE])
def test_loss_and_gradients_match_dense(split, item_based, encoder, decoder, hidden_units,
                                        dense_density):
  layout = build_layout(split.train, item_based=item_based)
  config = model_config(item_based=item_based, encoder_activation=encoder,
                        decoder_activation=decoder, hidden_units=hidden_units)
  tf.random.set_seed(0)
  model = training.build_model(config, layout)
  expected_loss, expected_gradients = dense_loss_and_gradients(model, layout.train)
  # Two uneven row blocks: block gradients must add up to the whole objective's.
  middle = layout.num_rows // 3
  blocks = [sparse_blocks.make_block(layout.train, 0, middle, dense_density),
            sparse_blocks.make_block(layout.train, middle, layout.num_rows, dense_density)]
  for block in blocks:
    dense_pairs = int(np.isin(block.columns, block.dense_columns).sum())
    expected_dense = {ALL_SPARSE: [0], HYBRID: range(1, block.nnz), ALL_DENSE: [block.nnz]}
    assert dense_pairs in expected_dense[dense_density]
  loss, gradients = sparse_loss_and_gradients(model, blocks)
  assert float(model.losses[0]) > 0.01 * float(expected_loss)  # The L2 term is really tested.
  assert float(loss) == pytest.approx(float(expected_loss), rel=1e-5)
  for variable, expected, actual in zip(model.trainable_variables, expected_gradients, gradients):
    assert relative_error(expected, actual) < 1e-5, variable.path


def test_hybrid_decoder_matches_gemm_and_gather_dot():
  """Dense columns by GEMM blocks, the others by gather-dots: the same logits either way."""
  rng = np.random.default_rng(0)
  num_rows, num_columns, k = 30, 50, 8
  cells = np.sort(rng.choice(num_rows * num_columns, size=400, replace=False))
  rows = tf.constant(cells // num_columns, tf.int32)
  columns = tf.constant(cells % num_columns, tf.int32)
  hidden = tf.constant(rng.normal(size=(num_rows, k)), tf.float32)
  kernel = tf.constant(rng.normal(size=(k, num_columns)), tf.float32)
  expected = tf.gather_nd(tf.matmul(hidden, kernel), tf.stack([rows, columns], axis=1))
  for dense_columns in ([], np.arange(num_columns), rng.choice(num_columns, 20, replace=False)):
    dense_columns = tf.constant(np.sort(dense_columns), tf.int32)
    dots = kernels.hybrid_dot(hidden, kernel, rows, columns, dense_columns, tf.float32, chunk=64)
    np.testing.assert_allclose(dots, expected, rtol=1e-5, atol=1e-5)


def test_dense_columns_are_those_above_the_density():
  columns = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4, 4])
  np.testing.assert_array_equal(sparse_blocks.dense_columns_of(columns, 10, 6, 0.2), [0, 2, 4])
  assert sparse_blocks.dense_columns_of(columns, 10, 6, math.inf).size == 0
  # All columns when the GEMM of the rest costs less than their gather-dots and the split.
  columns = np.array([0] * 9 + [1] * 9 + [2])
  np.testing.assert_array_equal(sparse_blocks.dense_columns_of(columns, 10, 3, 0.1), [0, 1, 2])
  np.testing.assert_array_equal(sparse_blocks.dense_columns_of(columns, 10, 4, 0.1), [0, 1])


def test_many_columns_are_not_split(monkeypatch):
  monkeypatch.setattr(sparse_blocks, "SPLIT_MAX_COLUMNS", 3)
  columns = np.array([0] * 9 + [1] * 9 + [2])
  np.testing.assert_array_equal(sparse_blocks.dense_columns_of(columns, 10, 4, 0.1), [0, 1, 2, 3])
  assert sparse_blocks.dense_columns_of(columns, 10, 4, math.inf).size == 0


@pytest.mark.parametrize("batch_size", [0, 12])
def test_cached_csr_matrices_give_the_same_steps(split, monkeypatch, batch_size):
  layout = build_layout(split.train)
  states = []
  for cache_ratings in [0, sparse_trainer.CSR_CACHE_RATINGS]:
    monkeypatch.setattr(sparse_trainer, "CSR_CACHE_RATINGS", cache_ratings)
    keras.utils.set_random_seed(0)
    model = training.build_model(model_config(), layout)
    model.compile(optimizer=make_optimizer("adam", 0.01))
    trainer = sparse_trainer.SparseTrainer(model, layout.train, tf.distribute.get_strategy(),
                                   batch_size=batch_size, dense_density=HYBRID)
    # Without the cache, X^T and the residual's transpose come from SparseMatrixTranspose.
    assert all((block.csr is None) == (block.indices is None)
               == (block.transpose_order is None) == (not cache_ratings)
               for group in trainer.groups for block in group)
    losses = [trainer.run_epoch() for _ in range(3)]
    states.append((losses, trainer.predict_pairs(np.array([0, 3]), np.array([1, 2]))))
  assert states[1][0] == states[0][0]
  np.testing.assert_array_equal(states[1][1], states[0][1])


def float32_and_bfloat16_objectives(split, dense_density: float) -> tuple:
  """(loss, gradients) of one model on one block, in float32 and then in bfloat16."""
  layout = build_layout(split.train)
  tf.random.set_seed(0)
  model = training.build_model(model_config(), layout)
  block = [sparse_blocks.make_block(layout.train, dense_density=dense_density)]
  return (sparse_loss_and_gradients(model, block),
          sparse_loss_and_gradients(model, block, tf.bfloat16))


# bfloat16 applies to the gather-dots, and to the GEMM where the CPU multiplies it natively.
@pytest.mark.parametrize("dense_density, native", [(ALL_SPARSE, False), (ALL_DENSE, True)])
def test_bfloat16_is_within_noise_of_float32(split, monkeypatch, dense_density, native):
  monkeypatch.setattr(kernels, "native_matmul", lambda dtype: native or dtype == tf.float32)
  (loss32, gradients32), (loss16, gradients16) = float32_and_bfloat16_objectives(split,
                                                                                dense_density)
  assert loss16.dtype == tf.float32
  assert float(loss16) == pytest.approx(float(loss32), rel=1e-2)
  assert float(loss16) != float(loss32)  # bfloat16 is really used.
  for expected, actual in zip(gradients32, gradients16):
    assert relative_error(expected, actual) < 3e-2


def test_bfloat16_gemm_stays_float32_without_native_bfloat16(split, monkeypatch):
  monkeypatch.setattr(kernels, "native_matmul", lambda dtype: dtype == tf.float32)
  (loss32, _), (loss16, _) = float32_and_bfloat16_objectives(split, ALL_DENSE)
  assert float(loss16) == float(loss32)


def fit_configs(execution: str, **overrides) -> training.TrainConfig:
  settings = dict(epochs=8, patience=100, verbose=0, learning_rate=0.01)
  return training.TrainConfig(execution=execution, **{**settings, **overrides})


def test_sparse_training_follows_dense_training(split):
  """Full-batch Rprop from the same initial weights takes the same steps on both paths."""
  dense = training.fit(split, model_config(), fit_configs("dense"))
  trained = training.fit(split, model_config(), fit_configs("sparse"))
  np.testing.assert_allclose(trained.history["val_rmse"], dense.history["val_rmse"], rtol=1e-4)
  assert trained.history["val_rmse"][-1] < trained.history["val_rmse"][0] - 0.05
  for expected, actual in zip(dense.model.get_weights(), trained.model.get_weights()):
    np.testing.assert_allclose(actual, expected, atol=1e-4)
  # The returned model is an ordinary AutoRec: dense evaluation agrees with sparse validation.
  metrics = training.evaluate(trained, split)
  assert metrics["validation_rmse"] == pytest.approx(min(trained.history["val_rmse"]), abs=1e-5)


# Two hidden layers for float16: their gradients are float16, which loss scaling protects.
@pytest.mark.parametrize("mixed_precision, hidden_units", [("bfloat16", (16,)),
                                                           ("float16", (16, 8))])
def test_mixed_precision_training_matches_float32(split, mixed_precision, hidden_units):
  config = model_config(hidden_units=hidden_units)
  trained32 = training.fit(split, config, fit_configs("sparse"))
  trained16 = training.fit(split, config, fit_configs("sparse", mixed_precision=mixed_precision))
  assert trained32.history["val_rmse"][-1] < trained32.history["val_rmse"][0] - 0.05
  assert trained16.history["val_rmse"][-1] == pytest.approx(trained32.history["val_rmse"][-1],
                                                            abs=5e-3)
  assert (isinstance(trained16.model.optimizer, keras.optimizers.LossScaleOptimizer)
          == (mixed_precision == "float16"))


def test_loss_scaled_steps_equal_unscaled_steps(split):
  """SGD, whose step is proportional to the gradient: a scale not undone would show."""
  layout = build_layout(split.train)
  weights = []
  for optimizer in [keras.optimizers.SGD(0.1),
                    keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1),
                                                        initial_scale=1024.0)]:
    keras.utils.set_random_seed(0)
    model = training.build_model(model_config(), layout)
    model.compile(optimizer=optimizer)
    trainer = sparse_trainer.SparseTrainer(model, layout.train, tf.distribute.get_strategy(),
                                   compute_dtype=tf.float16)
    trainer.run_epoch()
    weights.append(model.get_weights())
  assert float(model.optimizer.scale_loss(tf.constant(1.0))) == 1024.0
  assert not np.allclose(weights[0][0], model_weights_at_init(layout)[0])
  for expected, actual in zip(*weights):
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def model_weights_at_init(layout) -> list:
  keras.utils.set_random_seed(0)
  return training.build_model(model_config(), layout).get_weights()


def test_resume_continues_where_it_stopped(split, tmp_path):
  uninterrupted = training.fit(split, model_config(), fit_configs("sparse"))
  model_dir = str(tmp_path / "run")
  training.fit(split, model_config(), fit_configs("sparse", model_dir=model_dir, epochs=5))
  resumed = training.fit(split, model_config(), fit_configs("sparse", model_dir=model_dir))
  assert resumed.epochs_run == 8
  np.testing.assert_allclose(resumed.history["val_rmse"], uninterrupted.history["val_rmse"],
                             rtol=1e-5)


def test_minibatch_adam_trains_and_stops_early(split):
  config = fit_configs("sparse", optimizer="adam", batch_size=10, epochs=60, patience=3)
  trained = training.fit(split, model_config(), config)
  rmse = trained.history["val_rmse"]
  assert min(rmse) < rmse[0] - 0.1
  assert trained.epochs_run < 60  # Early stopping ended the run.
  assert trained.best_epoch == int(np.argmin(rmse)) + 1


def test_auto_execution_picks_sparse_for_large_matrices():
  assert not sparse_trainer.use_sparse("auto", 1682, 943)  # ML-100K
  assert sparse_trainer.use_sparse("auto", 3706, 6040)  # ML-1M
  assert sparse_trainer.use_sparse("auto", 10_677, 69_878)
  assert not sparse_trainer.use_sparse("auto", 10_677, 69_878, supported=False)
  assert sparse_trainer.use_sparse("sparse", 10, 10)
  assert not sparse_trainer.use_sparse("dense", 10_677, 69_878)
  with pytest.raises(ValueError):
    sparse_trainer.use_sparse("fast", 10, 10)


@pytest.mark.parametrize("model_overrides, train_overrides, reason", [
    ({}, {}, None),
    ({"input_dropout": 0.1}, {}, "input_dropout"),
    ({}, {"strategy": "tpu"}, "no CSR kernels for the 'tpu' strategy"),
    ({}, {"mixed_precision": "int8"}, "mixed_precision"),
])
def test_unsupported_configurations_are_named(split, model_overrides, train_overrides, reason):
  config = model_config(**model_overrides)
  train_config = fit_configs("sparse", **train_overrides)
  found = sparse_trainer.unsupported_reason(config, train_config)
  if reason is None:
    assert found is None
    return
  assert reason in found
  with pytest.raises(ValueError, match=reason):
    training.fit(split, config, train_config)


def test_auto_execution_trains_unsupported_configurations_dense(split, monkeypatch):
  monkeypatch.setattr(sparse_trainer, "AUTO_SPARSE_CELLS", 0)
  monkeypatch.setattr(sparse_trainer, "fit_sparse", None)  # Would fail if called.
  trained = training.fit(split, model_config(input_dropout=0.1), fit_configs("auto", epochs=2))
  assert trained.epochs_run == 2


def test_tensorboard_logs_are_written_like_keras(split, tmp_path):
  trained = training.fit(split, model_config(),
                         fit_configs("sparse", epochs=3, model_dir=str(tmp_path)))
  for split_name, tag, expected in [("train", "epoch_loss", trained.history["loss"]),
                                    ("validation", "epoch_rmse", trained.history["val_rmse"])]:
    values = {}
    for path in tf.io.gfile.glob(str(tmp_path / "logs" / split_name / "events.*")):
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          if value.tag == tag:
            values[event.step] = float(tf.make_ndarray(value.tensor))
    assert [values[step] for step in sorted(values)] == pytest.approx(expected, rel=1e-6)
    assert sorted(values) == [0, 1, 2]


@pytest.mark.skipif(num_logical_cpus() < 2, reason="needs 2 logical CPUs (tests/conftest.py)")
# float16: Keras' loss scaling, whose updates run in the cross-replica context.
@pytest.mark.parametrize("batch_size, compute", [(0, "off"), (12, "off"), (0, "float16")])
def test_mirrored_strategy_gives_single_device_steps(split, batch_size, compute):
  layout = build_layout(split.train)
  strategies = [tf.distribute.get_strategy(),
                tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])]
  losses, weights = [], []
  for strategy in strategies:
    keras.utils.set_random_seed(0)
    with strategy.scope():
      model = training.build_model(model_config(), layout)
      optimizer = make_optimizer("adam", 0.01)
      if compute == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      model.compile(optimizer=optimizer)
    trainer = sparse_trainer.SparseTrainer(model, layout.train, strategy, batch_size=batch_size,
                                           compute_dtype=sparse_trainer.COMPUTE_DTYPES[compute])
    # Groups visit rows in the same order on both sides, so the steps are the same steps.
    losses.append([trainer.run_epoch() for _ in range(3)])
    weights.append(model.get_weights())
  assert strategies[1].num_replicas_in_sync == 2
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
  for expected, actual in zip(*weights):
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def _fused_and_keras_runs(split, optimizer: str, flag: str, epochs: int,
                          config: training.ModelConfig | None = None, **trainer_args):
  """(losses, weights + optimizer variables) with the Keras update, then with the fused one."""
  layout = build_layout(split.train)
  states = []
  for fused in [False, True]:
    keras.utils.set_random_seed(0)
    model = training.build_model(config or model_config(), layout)
    model.compile(optimizer=make_optimizer(optimizer, 0.01))
    trainer = sparse_trainer.SparseTrainer(model, layout.train, tf.distribute.get_strategy(),
                                   **trainer_args)
    assert getattr(trainer, flag)
    setattr(trainer, flag, fused)
    losses = [trainer.run_epoch() for _ in range(epochs)]
    states.append((losses, model.get_weights() + [v.numpy() for v in model.optimizer.variables]))
  return states


# Two hidden layers: the L2 term, which the fused update adds, is on every kernel.
@pytest.mark.parametrize("hidden_units", [(16,), (16, 8)])
def test_fused_adam_matches_keras_adam(split, hidden_units):
  keras_run, fused_run = _fused_and_keras_runs(
      split, "adam", "fused_adam", 3, model_config(hidden_units=hidden_units), batch_size=12)
  np.testing.assert_allclose(fused_run[0], keras_run[0], rtol=1e-5)
  for expected, actual in zip(keras_run[1], fused_run[1]):
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6)


def test_fused_rprop_matches_keras_rprop(split):
  keras_run, fused_run = _fused_and_keras_runs(split, "rprop", "fused_rprop", 4,
                                               dense_density=HYBRID)
  # The same elementwise arithmetic: bit-identical.
  assert fused_run[0] == keras_run[0]
  for expected, actual in zip(keras_run[1], fused_run[1]):
    np.testing.assert_array_equal(actual, expected)


def load_ml100k():
  from keras_autorec.data import ratings as ratings_lib
  columns = np.loadtxt(ML100K_FILE, dtype=np.int64)
  return ratings_lib.from_raw(columns[:, 0].astype(str), columns[:, 1].astype(str),
                              columns[:, 2].astype(np.float32), timestamp=columns[:, 3],
                              rating_scale=(1.0, 5.0), source=ML100K_FILE)


@pytest.mark.skipif(not os.path.exists(ML100K_FILE), reason="ML-100K not in /work/shared/data")
def test_ml100k_rmse_matches_dense():
  from keras_autorec.data import splits
  split = splits.random_split(load_ml100k(), seed=0)
  config = training.ModelConfig(hidden_units=(100,), l2_weight=1e-4)
  results = {}
  for execution in ("dense", "sparse"):
    trained = training.fit(split, config, fit_configs(execution, epochs=40))
    results[execution] = training.evaluate(trained, split)["test_rmse"]
  assert results["sparse"] < 1.0  # It learned something beyond the mean.
  assert results["sparse"] == pytest.approx(results["dense"], abs=2e-3)
