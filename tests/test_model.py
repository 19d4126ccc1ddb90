"""Tests for keras_autorec.model."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_autorec import model as model_lib
from keras_autorec import training
from keras_autorec.data import layout as layout_lib


def _batch(seed=0, rows=6, columns=10):
  rng = np.random.default_rng(seed)
  mask = (rng.random((rows, columns)) < 0.4).astype(np.float32)
  ratings = rng.integers(1, 6, size=(rows, columns)).astype(np.float32) * mask
  return ratings, mask


def _model(**kwargs):
  keras.utils.set_random_seed(0)
  model = model_lib.AutoRec(num_inputs=10, **{"hidden_units": (4,), **kwargs})
  model(tf.zeros((1, 10)))
  return model


def _loss_and_gradients(model, inputs, targets, mask):
  with tf.GradientTape(persistent=True) as tape:
    reconstruction = model(inputs)
    tape.watch(reconstruction)
    loss = model.compute_loss(y=targets, y_pred=reconstruction, sample_weight=mask)
  return (loss, tape.gradient(loss, reconstruction),
          tape.gradient(loss, model.trainable_variables))


def test_unobserved_entries_get_zero_gradient():
  model = _model(l2_weight=0.01)
  ratings, mask = _batch()
  _, gradient, _ = _loss_and_gradients(model, ratings, ratings, mask)
  assert np.all(gradient.numpy()[mask == 0] == 0.0)
  assert np.all(gradient.numpy()[mask == 1] != 0.0)


def test_unobserved_targets_do_not_change_loss_or_weight_gradients():
  model = _model(l2_weight=0.01)
  ratings, mask = _batch()
  noisy = ratings + (1 - mask) * np.random.default_rng(1).normal(size=ratings.shape) * 10
  loss, _, gradients = _loss_and_gradients(model, ratings, ratings, mask)
  noisy_loss, _, noisy_gradients = _loss_and_gradients(model, ratings, noisy.astype(np.float32),
                                                       mask)
  assert float(loss) == float(noisy_loss)
  for a, b in zip(gradients, noisy_gradients):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_loss_is_masked_mse_plus_l2_on_kernels_only():
  l2_weight = 0.05
  model = _model(l2_weight=l2_weight)
  for layer in model.hidden_layers + [model.output_layer]:
    layer.bias.assign(np.full(layer.bias.shape, 0.7, np.float32))
  ratings, mask = _batch()
  targets = _batch(seed=2)[0]
  w1, b1, w2, b2 = model.get_weights()
  hidden = 1.0 / (1.0 + np.exp(-(ratings.astype(np.float64) @ w1 + b1)))
  reconstruction = hidden @ w2 + b2
  expected = (np.sum(mask * (targets - reconstruction) ** 2) / np.sum(mask)
              + l2_weight * (np.sum(w1.astype(np.float64) ** 2) + np.sum(w2 ** 2)))
  loss = model.compute_loss(y=targets, y_pred=model(ratings), sample_weight=mask)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_config_round_trip_and_keras_file(tmp_path):
  model = _model(hidden_units=(8, 4, 8), l2_weight=0.01, encoder_activation="elu",
                 decoder_activation="sigmoid", input_dropout=0.2, rating_scale=(0.5, 5.0),
                 init_stddev=0.03, item_based=False)
  config = model.get_config()
  clone = model_lib.AutoRec.from_config(config)
  assert clone.get_config() == config
  ratings, _ = _batch()
  path = str(tmp_path / "autorec.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  assert isinstance(loaded, model_lib.AutoRec) and loaded.get_config() == config
  np.testing.assert_array_equal(loaded.predict_ratings(ratings).numpy(),
                                model.predict_ratings(ratings).numpy())


@pytest.mark.parametrize("item_based", [True, False])
def test_build_model_orientation(split, item_based):
  layout = layout_lib.build_layout(split.train, item_based=item_based)
  model = training.build_model(training.ModelConfig(item_based=item_based, hidden_units=(4,)),
                               layout)
  width = (np.unique(split.train.user_index).size if item_based
           else np.unique(split.train.item_index).size)
  assert model.hidden_layers[0].kernel.shape == (width, 4)
  assert model.output_layer.kernel.shape == (4, width)
  assert model.item_based is item_based


def test_predictions_clipped_to_rating_scale():
  model = _model(rating_scale=(1.0, 5.0))
  bias = np.where(np.arange(10) % 2 == 0, 9.0, -9.0).astype(np.float32)
  model.output_layer.bias.assign(bias)
  ratings, _ = _batch()
  raw = model(ratings).numpy()
  clipped = model.predict_ratings(ratings).numpy()
  assert raw.max() > 5.0 and raw.min() < 1.0
  np.testing.assert_array_equal(clipped, np.clip(raw, 1.0, 5.0))


def test_activations_validated():
  with pytest.raises(ValueError, match="activation"):
    model_lib.AutoRec(num_inputs=10, encoder_activation="softmax")
  with pytest.raises(ValueError, match="activation"):
    model_lib.AutoRec(num_inputs=10, decoder_activation="linear")
  with pytest.raises(ValueError, match="positive"):
    model_lib.AutoRec(num_inputs=10, hidden_units=())


def test_deep_model():
  model = _model(hidden_units=(8, 4, 8), encoder_activation="relu")
  assert [layer.kernel.shape for layer in model.hidden_layers] == [(10, 8), (8, 4), (4, 8)]
  ratings, _ = _batch()
  assert model.encode(ratings).shape == (6, 8)
  assert model(ratings).shape == (6, 10)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_bounded_decoder_activations_span_the_rating_scale(activation):
  model = model_lib.AutoRec(num_inputs=3, hidden_units=(2,), decoder_activation=activation,
                            rating_scale=(1.0, 5.0))
  model(np.zeros((1, 3), np.float32))
  model.output_layer.kernel.assign(np.zeros((2, 3), np.float32))
  model.output_layer.bias.assign(np.array([-30.0, 0.0, 30.0], np.float32))
  np.testing.assert_allclose(model(np.zeros((1, 3), np.float32)).numpy()[0], [1.0, 3.0, 5.0],
                             atol=1e-5)


def test_scaled_activation_by_hand_and_round_trip():
  activation = model_lib.ScaledActivation("tanh", 1.0, 5.0)
  # tanh(0.5) = 0.46211716; 1 + 4 * (0.46211716 + 1) / 2 = 3.92423431.
  assert float(activation(tf.constant(0.5))) == pytest.approx(3.92423431, rel=1e-6)
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(activation))
  assert isinstance(restored, model_lib.ScaledActivation)
  assert (restored.name, restored.low, restored.high) == ("tanh", 1.0, 5.0)
  with pytest.raises(ValueError, match="sigmoid or tanh"):
    model_lib.ScaledActivation("relu", 1.0, 5.0)


def test_encode_matches_the_model_layers():
  model = model_lib.AutoRec(num_inputs=10, hidden_units=(8, 4), encoder_activation="elu")
  ratings, _ = _batch()
  model(ratings)
  params = [(layer.kernel, layer.bias) for layer in model.hidden_layers]
  np.testing.assert_array_equal(model_lib.encode(params, ratings, "elu").numpy(),
                                model.encode(ratings).numpy())
  doubled = model_lib.encode(params, ratings, "elu",
                             first_product=lambda x, kernel: tf.matmul(2.0 * x, kernel))
  np.testing.assert_array_equal(doubled.numpy(), model.encode(2.0 * ratings).numpy())


def test_building_the_model_warns_of_no_unbuilt_layer():
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    _model()
  assert [str(warning.message) for warning in caught] == []
