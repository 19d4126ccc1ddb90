"""Tests of the TF Serving export: signatures against the Keras model, versioning, assets."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from keras_autorec import evaluation, export, training
from keras_autorec.data import ratings as ratings_lib
from keras_autorec.data import splits
from keras_autorec.serving import publish, warmup
import tf_serving_fake

NUM_USERS, NUM_ITEMS = 48, 36
DEFAULT_RATING = 2.5
UNKNOWN_ID = "no-such-id"
NON_STOCK_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def synthetic_ratings(num_users: int = NUM_USERS, num_items: int = NUM_ITEMS,
                      density: float = 0.7, seed: int = 0) -> ratings_lib.Ratings:
  """Rank-2 ratings on 1..5 with noise; ids are strings that do not sort like their numbers."""
  rng = np.random.default_rng(seed)
  user_factors = rng.normal(size=(num_users, 2))
  item_factors = rng.normal(size=(num_items, 2))
  users, items = np.nonzero(rng.random((num_users, num_items)) < density)
  values = 3.0 + np.sum(user_factors[users] * item_factors[items], axis=1)
  values = np.clip(np.round(values + rng.normal(scale=0.3, size=values.shape)), 1, 5)
  return ratings_lib.from_raw(np.char.add("u", users.astype(str)),
                              np.char.add("i", items.astype(str)), values, None, (1, 5),
                              "synthetic")


@dataclasses.dataclass
class Exported:
  trained: training.TrainedModel
  path: str
  config: export.ExportConfig

  @property
  def model(self):
    return self.trained.model

  @property
  def layout(self):
    return self.trained.layout


@pytest.fixture(scope="module")
def split() -> splits.RatingsSplit:
  return splits.random_split(synthetic_ratings(), seed=0)


def train(split: splits.RatingsSplit, item_based: bool) -> training.TrainedModel:
  # Trained close enough to convergence that the I-AutoRec fold-in can recover its users.
  return training.fit(
      split, training.ModelConfig(item_based=item_based, hidden_units=(8,), l2_weight=1e-3),
      training.TrainConfig(epochs=30, batch_size=64, learning_rate=3e-2, patience=30,
                           verbose=0))


@pytest.fixture(scope="module")
def cache() -> dict:
  """Trained exports and loaded models shared by the tests of this module, built on first use."""
  return {}


@pytest.fixture(params=[True, False], ids=["I-AutoRec", "U-AutoRec"])
def exported(request, cache, split, tmp_path_factory) -> Exported:
  key = ("exported", request.param)
  if key not in cache:
    trained = train(split, item_based=request.param)
    # K above the number of items is clamped to it, so the lists hold every item.
    config = export.ExportConfig(export_dir=str(tmp_path_factory.mktemp("export") / "autorec"),
                                 top_k=1000, default_rating=DEFAULT_RATING)
    path = export.export_model(trained.model, trained.layout, config, metadata={"run": "test"})
    cache[key] = Exported(trained, path, config)
  return cache[key]


class Tf1Signatures:
  """Runs SignatureDefs by their tensor names in a TF1 session, as TF Serving's C++ does."""

  def __init__(self, path: str):
    self.graph = tf.Graph()
    self.session = tf.compat.v1.Session(graph=self.graph)
    with self.graph.as_default():
      meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], path)
    self.signature_defs = meta_graph.signature_def

  def __call__(self, name: str, **inputs) -> dict[str, np.ndarray]:
    signature = self.signature_defs[name]
    fetches = {key: info.name for key, info in signature.outputs.items()}
    feed = {signature.inputs[key].name: value for key, value in inputs.items()}
    return self.session.run(fetches, feed_dict=feed)


class LoadedSignatures:
  """Runs the signatures of `tf.saved_model.load`."""

  def __init__(self, path: str):
    self.loaded = tf.saved_model.load(path)

  def __call__(self, name: str, **inputs) -> dict[str, np.ndarray]:
    outputs = self.loaded.signatures[name](**{key: tf.constant(value)
                                              for key, value in inputs.items()})
    return {key: value.numpy() for key, value in outputs.items()}


@pytest.fixture(params=[LoadedSignatures, Tf1Signatures], ids=["saved_model.load", "tf1_session"])
def run(request, cache, exported):
  """run(signature name, **inputs) -> outputs as numpy, item ids decoded to str."""
  key = (request.param, exported.path)
  if key not in cache:
    cache[key] = request.param(exported.path)
  signatures = cache[key]

  def run_signature(name: str, **inputs) -> dict[str, np.ndarray]:
    outputs = signatures(name, **inputs)
    if "item_ids" in outputs:
      outputs["item_ids"] = np.vectorize(bytes.decode, otypes=[object])(outputs["item_ids"])
    return outputs

  return run_signature


def as_ids(values) -> np.ndarray:
  return np.asarray(values, dtype=object)


def reconstruction(model, layout) -> tuple[np.ndarray, np.ndarray]:
  """Unclipped and clipped Keras predictions as [users, items] matrices."""
  inputs = layout.train.to_dense()
  unclipped = ops.convert_to_numpy(model(inputs, training=False))
  clipped = ops.convert_to_numpy(model.predict_ratings(inputs))
  if layout.item_based:
    return unclipped.T, clipped.T
  return unclipped, clipped


def training_mask(layout) -> np.ndarray:
  """bool [users, items], True where the user rated the item in training."""
  rated = layout.train.to_dense() != 0
  return rated.T if layout.item_based else rated


def popularity_bonus(exported) -> np.ndarray:
  """popularity_weight x standardised log(1 + training ratings) of each item, [items]."""
  log_counts = np.log1p(training_mask(exported.layout).sum(axis=0))
  return (exported.config.popularity_weight * (log_counts - log_counts.mean())
          / log_counts.std())


def recommendation(exported, unclipped) -> tuple[np.ndarray, np.ndarray]:
  """Expected (scores, ratings) of recommend for unclipped predicted ratings [users, items]."""
  return unclipped + popularity_bonus(exported), np.clip(unclipped, 1, 5)


def check_top_k(outputs, expected_scores, excluded, item_vocabulary, expected_ratings=None):
  """Top-K rows list every non-excluded item once, best first, with the expected values."""
  item_ids, scores = outputs["item_ids"], outputs["scores"]
  for row in range(item_ids.shape[0]):
    available = ~excluded[row]
    num_available = int(available.sum())
    listed = item_ids[row, :num_available]
    positions = np.searchsorted(item_vocabulary, listed.astype(str))
    assert sorted(positions.tolist()) == np.flatnonzero(available).tolist()
    assert all(id_ == "" for id_ in item_ids[row, num_available:])
    assert np.all(np.isneginf(scores[row, num_available:]))
    np.testing.assert_allclose(scores[row, :num_available], expected_scores[row, positions],
                               atol=1e-4)
    assert np.all(np.diff(scores[row, :num_available]) <= 0)
    if expected_ratings is not None:
      ratings = outputs["ratings"]
      np.testing.assert_allclose(ratings[row, :num_available],
                                 expected_ratings[row, positions], atol=1e-4)
      assert np.all(np.isneginf(ratings[row, num_available:]))


def test_serving_default_matches_keras_and_defaults_unknown_ids(exported, run):
  layout = exported.layout
  user_ids = np.append(layout.user_ids(), UNKNOWN_ID)
  item_ids = np.append(layout.item_ids(), UNKNOWN_ID)
  users, items = (grid.ravel() for grid in np.meshgrid(np.arange(user_ids.shape[0]),
                                                       np.arange(item_ids.shape[0])))
  user_positions = np.where(users < layout.user_ids().shape[0], users, -1)
  item_positions = np.where(items < layout.item_ids().shape[0], items, -1)
  rows, columns = ((item_positions, user_positions) if layout.item_based
                   else (user_positions, item_positions))
  expected = evaluation.predict_pairs(exported.model, layout, rows, columns, DEFAULT_RATING)

  rating = run("serving_default", user_id=as_ids(user_ids[users]),
               item_id=as_ids(item_ids[items]))["rating"]
  assert rating.dtype == np.float32
  np.testing.assert_allclose(rating, expected, atol=1e-4)
  unknown = (user_positions < 0) | (item_positions < 0)
  assert unknown.sum() == user_ids.shape[0] + item_ids.shape[0] - 1
  np.testing.assert_array_equal(rating[unknown], DEFAULT_RATING)
  assert rating.min() >= 1.0 and rating.max() <= 5.0


def test_serving_default_predicts_unknown_ids_by_the_fallback(exported, split, tmp_path):
  trained, layout = exported.trained, exported.layout
  # No id of this dense data is rarely rated, so the biases of new ids are set by hand.
  biases = dataclasses.replace(trained.fallback, new_user_bias=-0.2, new_item_bias=0.3)
  config = dataclasses.replace(exported.config, export_dir=str(tmp_path), warmup_requests=False)
  loaded = tf.saved_model.load(export.export_model(trained.model, layout, config,
                                                   fallback=biases))
  user_id, item_id = layout.user_ids()[3], layout.item_ids()[5]
  user = list(split.train.user_ids).index(user_id)
  item = list(split.train.item_ids).index(item_id)
  rating = loaded.signatures["serving_default"](
      user_id=tf.constant([user_id, UNKNOWN_ID, UNKNOWN_ID]),
      item_id=tf.constant([UNKNOWN_ID, item_id, UNKNOWN_ID]))["rating"].numpy()
  expected = np.clip([biases.global_mean + biases.user_bias[user] + biases.new_item_bias,
                      biases.global_mean + biases.new_user_bias + biases.item_bias[item],
                      biases.global_mean + biases.new_user_bias + biases.new_item_bias], 1, 5)
  np.testing.assert_allclose(rating, expected, rtol=1e-6)
  assert len(set(rating.round(4))) == 3


def test_serving_default_without_the_rating_table_computes_the_same_ratings(exported,
                                                                           tmp_path):
  layout = exported.layout
  config = dataclasses.replace(exported.config, export_dir=str(tmp_path),
                               rating_table_max_cells=0, warmup_requests=False)
  without_table = tf.saved_model.load(export.export_model(exported.model, layout, config))
  with_table = tf.saved_model.load(exported.path)
  assert hasattr(with_table, "rating_table") and not hasattr(without_table, "rating_table")
  users, items = (grid.ravel() for grid in np.meshgrid(layout.user_ids(), layout.item_ids()))
  inputs = {"user_id": tf.constant(users.astype(object)), "item_id": tf.constant(
      items.astype(object))}
  np.testing.assert_allclose(
      without_table.signatures["serving_default"](**inputs)["rating"].numpy(),
      with_table.signatures["serving_default"](**inputs)["rating"].numpy(), atol=1e-5)


@pytest.mark.parametrize("rating_table_max_cells", [0, 10**9])
def test_sigmoid_decoder_is_exported_on_the_rating_scale(split, tmp_path, rating_table_max_cells):
  trained = training.fit(
      split, training.ModelConfig(hidden_units=(8,), decoder_activation="sigmoid"),
      training.TrainConfig(epochs=20, batch_size=64, learning_rate=3e-2, verbose=0))
  layout = trained.layout
  config = export.ExportConfig(export_dir=str(tmp_path), top_k=5, warmup_requests=False,
                               rating_table_max_cells=rating_table_max_cells)
  loaded = tf.saved_model.load(export.export_model(trained.model, layout, config))
  users, items = (grid.ravel() for grid in np.meshgrid(np.arange(layout.user_ids().shape[0]),
                                                       np.arange(layout.item_ids().shape[0])))
  rows, columns = (items, users) if layout.item_based else (users, items)
  expected = evaluation.predict_pairs(trained.model, layout, rows, columns, DEFAULT_RATING)
  rating = loaded.signatures["serving_default"](
      user_id=tf.constant(layout.user_ids()[users].astype(object)),
      item_id=tf.constant(layout.item_ids()[items].astype(object)))["rating"].numpy()
  np.testing.assert_allclose(rating, expected, atol=1e-4)
  assert rating.max() > 2.0  # An unscaled sigmoid could not exceed 1.
  folded = loaded.signatures["recommend_for_ratings"](
      item_ids=tf.constant(layout.item_ids()[:3].astype(object)[np.newaxis]),
      ratings=tf.constant([[5.0, 1.0, 4.0]]))["ratings"].numpy()
  assert np.all((folded >= 1.0) & (folded <= 5.0))


def test_recommend_matches_keras_excludes_training_items_and_is_sorted(exported, run):
  layout = exported.layout
  unclipped, _ = reconstruction(exported.model, layout)
  outputs = run("recommend", user_id=as_ids(layout.user_ids()))
  assert outputs["item_ids"].shape == (layout.user_ids().shape[0], NUM_ITEMS)
  scores, ratings = recommendation(exported, unclipped)
  check_top_k(outputs, scores, training_mask(layout), layout.item_ids(), ratings)
  finite = np.where(np.isfinite(outputs["scores"]), outputs["scores"], -1e9)
  assert np.all(np.diff(finite, axis=1) <= 0)


def test_zero_popularity_weight_ranks_by_predicted_rating(exported, tmp_path):
  layout = exported.layout
  config = dataclasses.replace(exported.config, export_dir=str(tmp_path), popularity_weight=0.0,
                               warmup_requests=False)
  loaded = tf.saved_model.load(export.export_model(exported.model, layout, config))
  outputs = loaded.signatures["recommend"](user_id=tf.constant(layout.user_ids().astype(object)))
  outputs = {name: value.numpy() for name, value in outputs.items()}
  outputs["item_ids"] = outputs["item_ids"].astype(str).astype(object)
  unclipped, clipped = reconstruction(exported.model, layout)
  check_top_k(outputs, unclipped, training_mask(layout), layout.item_ids(), clipped)


def test_recommend_for_unknown_user_is_the_fold_in_of_no_ratings(exported, run):
  cold = run("recommend", user_id=as_ids([UNKNOWN_ID]))
  empty = run("recommend_for_ratings", item_ids=as_ids([["", UNKNOWN_ID]]),
              ratings=np.array([[0.0, 4.0]], np.float32))
  assert cold["item_ids"].tolist() == empty["item_ids"].tolist()
  np.testing.assert_allclose(cold["scores"], empty["scores"], atol=1e-5)
  np.testing.assert_allclose(cold["ratings"], empty["ratings"], atol=1e-5)
  assert np.all(np.isfinite(cold["scores"]))  # nothing is excluded for an unknown user


def test_u_autorec_fold_in_of_own_ratings_equals_recommend(exported, run):
  layout = exported.layout
  if layout.item_based:
    pytest.skip("U-AutoRec only: it re-encodes the same rating vector")
  users = np.arange(0, layout.num_rows, 5)
  item_ids, ratings = padded_training_ratings(layout, users)
  folded_in = run("recommend_for_ratings", item_ids=item_ids, ratings=ratings)
  recommended = run("recommend", user_id=as_ids(layout.user_ids()[users]))
  assert folded_in["item_ids"].tolist() == recommended["item_ids"].tolist()
  np.testing.assert_allclose(folded_in["scores"], recommended["scores"], atol=1e-4)
  np.testing.assert_allclose(folded_in["ratings"], recommended["ratings"], atol=1e-4)
  # ... and the Keras model on a new user's vector gives the same scores.
  unclipped, _ = reconstruction(exported.model, layout)
  scores, ratings = recommendation(exported, unclipped[users])
  check_top_k(folded_in, scores, training_mask(layout)[users], layout.item_ids(), ratings)


def padded_training_ratings(layout, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Each user's training (item ids, ratings), padded with "" to [len(users), L]."""
  dense = layout.train.to_dense()
  by_user = dense.T if layout.item_based else dense
  width = int((by_user[users] != 0).sum(axis=1).max()) + 1  # at least one padding slot
  item_ids = np.full((users.shape[0], width), "", dtype=object)
  ratings = np.zeros((users.shape[0], width), np.float32)
  for row, user in enumerate(users):
    items = np.flatnonzero(by_user[user])
    item_ids[row, :items.shape[0]] = layout.item_ids()[items]
    ratings[row, :items.shape[0]] = by_user[user, items]
  return item_ids, ratings


def item_codes(model, layout) -> np.ndarray:
  return ops.convert_to_numpy(model.encode(layout.train.to_dense(), training=False))


def numpy_ridge_scores(model, layout, fold_in_l2, item_ids, ratings) -> np.ndarray:
  """I-AutoRec fold-in scores (unclipped) by numpy's least squares, [users, items]."""
  codes = item_codes(model, layout)
  kernel = ops.convert_to_numpy(model.output_layer.kernel)
  bias = ops.convert_to_numpy(model.output_layer.bias)
  prior = np.append(kernel.mean(axis=1), bias.mean())
  position = {id_: n for n, id_ in enumerate(layout.item_ids())}
  scores = []
  for ids, values in zip(item_ids, ratings):
    known = [n for n, id_ in enumerate(ids) if id_ in position]
    rated = [position[ids[n]] for n in known]
    targets = values[known]
    design = np.hstack([codes[rated], np.ones((len(rated), 1))])
    stacked = np.vstack([design, np.sqrt(fold_in_l2) * np.eye(design.shape[1])])
    residuals = np.concatenate([targets - design @ prior, np.zeros(design.shape[1])])
    theta = prior + np.linalg.lstsq(stacked, residuals, rcond=None)[0]
    scores.append(codes @ theta[:-1] + theta[-1])
  return np.asarray(scores)


@pytest.mark.parametrize("num_rated, width", [(1, 3), (2, 3), (23, 24)],
                         ids=["one_rating_dual", "two_ratings_dual", "many_ratings_primal"])
def test_i_autorec_fold_in_is_the_ridge_solution(exported, run, num_rated, width):
  layout = exported.layout
  if not layout.item_based:
    pytest.skip("I-AutoRec only")
  # Widths below the hidden units + 1 take the dual form of the solve, others the primal.
  rated = np.arange(2, 2 + num_rated)
  item_ids = np.full((2, width), "", dtype=object)
  item_ids[0, :num_rated] = layout.item_ids()[rated]
  item_ids[1, width - num_rated:] = layout.item_ids()[rated[::-1]]
  ratings = np.zeros(item_ids.shape, np.float32)
  ratings[0, :num_rated] = np.linspace(5, 1, num_rated)
  ratings[1, width - num_rated:] = ratings[0, :num_rated][::-1]
  penalty = export.fold_in_l2(exported.config, exported.model, layout)
  expected = numpy_ridge_scores(exported.model, layout, penalty,
                                item_ids, ratings)
  np.testing.assert_allclose(expected[0], expected[1], atol=1e-5)
  outputs = run("recommend_for_ratings", item_ids=item_ids, ratings=ratings)
  excluded = np.zeros((2, NUM_ITEMS), bool)
  excluded[:, rated] = True
  scores, ratings = recommendation(exported, expected)
  check_top_k(outputs, scores, excluded, layout.item_ids(), ratings)


def test_i_autorec_fold_in_of_own_ratings_approximates_the_trained_user(exported, run):
  layout = exported.layout
  if not layout.item_based:
    pytest.skip("I-AutoRec only: U-AutoRec reproduces recommend exactly")
  users = np.arange(0, layout.num_columns, 4)
  item_ids, ratings = padded_training_ratings(layout, users)
  folded_in = run("recommend_for_ratings", item_ids=item_ids, ratings=ratings)
  recommended = run("recommend", user_id=as_ids(layout.user_ids()[users]))
  correlations, overlaps = [], []
  for row in range(users.shape[0]):
    # Ratings, not scores, whose shared popularity bonus would correlate by itself.
    scores = dict(zip(folded_in["item_ids"][row], folded_in["ratings"][row]))
    scores.pop("", None)
    trained = dict(zip(recommended["item_ids"][row], recommended["ratings"][row]))
    assert sorted(scores) == sorted(id_ for id_ in trained if id_)
    ids = sorted(scores)
    correlations.append(np.corrcoef([scores[i] for i in ids], [trained[i] for i in ids])[0, 1])
    top = 5
    overlaps.append(len(set(folded_in["item_ids"][row, :top])
                        & set(recommended["item_ids"][row, :top])) / top)
  assert np.median(correlations) > 0.8, correlations
  assert np.mean(overlaps) > 0.5, overlaps


def test_recommend_for_ratings_ignores_padding_and_unknown_items(exported, run):
  item_ids = as_ids([["i1", "i2", "", ""], ["", "i2", UNKNOWN_ID, "i1"]])
  ratings = np.array([[4.0, 2.0, 0.0, 0.0], [3.0, 2.0, 5.0, 4.0]], np.float32)
  outputs = run("recommend_for_ratings", item_ids=item_ids, ratings=ratings)
  assert outputs["item_ids"][0].tolist() == outputs["item_ids"][1].tolist()
  np.testing.assert_allclose(outputs["scores"][0], outputs["scores"][1], atol=1e-5)
  assert not {"i1", "i2"} & set(outputs["item_ids"][0])
  assert outputs["item_ids"][0].tolist()[-2:] == ["", ""]


def test_similar_items_is_cosine_similarity_without_the_item_itself(exported, run):
  layout, model = exported.layout, exported.model
  if layout.item_based:
    vectors = item_codes(model, layout)
  else:
    vectors = ops.convert_to_numpy(model.output_layer.kernel).T
  unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
  expected = unit @ unit.T
  outputs = run("similar_items", item_id=as_ids(layout.item_ids()))
  assert sorted(outputs) == ["item_ids", "scores"]
  check_top_k(outputs, expected, np.eye(NUM_ITEMS, dtype=bool), layout.item_ids())
  unknown = run("similar_items", item_id=as_ids([UNKNOWN_ID]))
  assert set(unknown["item_ids"][0]) == {""} and np.all(np.isneginf(unknown["scores"]))


def test_signature_defs_follow_the_contract(exported):
  signature_defs = tf_serving_fake.read_signature_defs(exported.path)
  assert sorted(name for name in signature_defs if not name.startswith("__")) == sorted(
      export.SIGNATURE_NAMES)

  def spec(tensor_infos):
    return {name: (tf.dtypes.as_dtype(info.dtype).name,
                   [dim.size for dim in info.tensor_shape.dim])
            for name, info in tensor_infos.items()}

  top_k = {"item_ids": ("string", [-1, NUM_ITEMS]), "scores": ("float32", [-1, NUM_ITEMS])}
  recommendations = {**top_k, "ratings": ("float32", [-1, NUM_ITEMS])}
  expected = {
      "serving_default": ({"user_id": ("string", [-1]), "item_id": ("string", [-1])},
                          {"rating": ("float32", [-1])}),
      "recommend": ({"user_id": ("string", [-1])}, recommendations),
      "recommend_for_ratings": ({"item_ids": ("string", [-1, -1]),
                                 "ratings": ("float32", [-1, -1])}, recommendations),
      "similar_items": ({"item_id": ("string", [-1])}, top_k),
  }
  for name, (inputs, outputs) in expected.items():
    assert signature_defs[name].method_name == "tensorflow/serving/predict"
    assert spec(signature_defs[name].inputs) == inputs
    assert spec(signature_defs[name].outputs) == outputs


def test_signatures_use_only_stock_ops(exported):
  saved_model = saved_model_pb2.SavedModel()
  saved_model.ParseFromString(pathlib.Path(exported.path, "saved_model.pb").read_bytes())
  (meta_graph,) = saved_model.meta_graphs
  graph = meta_graph.graph_def
  op_types = {node.op for node in graph.node}
  for function in graph.library.function:
    op_types |= {node.op for node in function.node_def}
  function_names = {function.signature.name for function in graph.library.function}
  op_types -= function_names  # calls of library functions by name
  assert not op_types & NON_STOCK_OPS
  assert not {op for op in op_types if "Dataset" in op or "Iterator" in op}
  # Ops compiled into TensorFlow are in tf.raw_ops; custom kernels loaded at runtime are not.
  assert {op for op in op_types if not hasattr(tf.raw_ops, op)} == set()
  assert {"HashTableV2", "LookupTableFindV2", "TopKV2"} <= op_types


def test_warmup_requests_cover_every_signature_and_replay(exported):
  path = os.path.join(exported.path, export.ASSETS_EXTRA, export.WARMUP_FILE)
  logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy())
          for record in tf.data.TFRecordDataset(path)]
  assert 0 < len(logs) <= 1000
  requests = [log.predict_log.request for log in logs]
  assert {request.model_spec.signature_name for request in requests} == set(
      export.SIGNATURE_NAMES)
  signatures = tf.saved_model.load(exported.path).signatures
  for request in requests:
    signatures[request.model_spec.signature_name](
        **{name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()})


def test_warmup_requests_stay_within_small_export_limits(small_model, tmp_path):
  # TF Serving refuses to load a model whose warmup requests fail.
  path = export.export_model(small_model.model, small_model.layout, export.ExportConfig(
      export_dir=str(tmp_path), max_batch_size=1, max_rating_slots=1))
  logs = [prediction_log_pb2.PredictionLog.FromString(record.numpy()) for record in
          tf.data.TFRecordDataset(os.path.join(path, export.ASSETS_EXTRA, export.WARMUP_FILE))]
  signatures = tf.saved_model.load(path).signatures
  for log in logs:
    request = log.predict_log.request
    signatures[request.model_spec.signature_name](
        **{name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()})
  assert len(logs) == 8


def test_metadata_records_the_model_and_the_callers_facts(exported):
  path = os.path.join(exported.path, export.ASSETS_EXTRA, export.METADATA_FILE)
  with open(path) as f:
    metadata = json.load(f)
  assert metadata["run"] == "test"
  assert metadata["keras_autorec_version"]
  assert metadata["model_config"]["hidden_units"] == [8]
  assert metadata["item_based"] == exported.layout.item_based
  assert metadata["export_config"]["top_k"] == 1000
  assert (metadata["num_users"], metadata["num_items"]) == (NUM_USERS, NUM_ITEMS)


@pytest.fixture(scope="module")
def small_model(split) -> training.TrainedModel:
  return training.fit(split, training.ModelConfig(hidden_units=(8,)),
                      training.TrainConfig(epochs=1, batch_size=16, verbose=0))


def test_exports_are_numbered_versions_and_partial_dirs_never_count(small_model, tmp_path):
  config = export.ExportConfig(export_dir=str(tmp_path / "autorec"), top_k=5,
                               warmup_requests=False)
  first = export.export_model(small_model.model, small_model.layout, config)
  assert first == os.path.join(config.export_dir, "1")
  # A leftover of a killed export, even holding a complete SavedModel, is not a version.
  leftover = os.path.join(config.export_dir, ".partial-12345-abc")
  shutil.copytree(first, leftover)
  second = export.export_model(small_model.model, small_model.layout, config)
  assert second == os.path.join(config.export_dir, "2")
  assert export.existing_versions(config.export_dir) == [1, 2]
  assert tf_serving_fake.find_versions(config.export_dir) == [1, 2]
  assert sorted(os.listdir(config.export_dir)) == [".partial-12345-abc", "1", "2"]
  outputs = tf.saved_model.load(second).signatures["recommend"](user_id=tf.constant(["u1"]))
  assert outputs["item_ids"].shape == (1, 5)


def test_crash_mid_export_leaves_no_new_version(small_model, tmp_path, monkeypatch):
  config = export.ExportConfig(export_dir=str(tmp_path / "autorec"))
  export.export_model(small_model.model, small_model.layout, config)

  def crash(*args, **kwargs):
    raise RuntimeError("killed while writing the warmup requests")

  # By then the SavedModel itself is written in full.
  monkeypatch.setattr(warmup, "write_warmup_requests", crash)
  with pytest.raises(RuntimeError, match="killed"):
    export.export_model(small_model.model, small_model.layout, config)
  assert os.listdir(config.export_dir) == ["1"]


def test_concurrent_exporter_taking_the_version_makes_the_next_one(small_model, tmp_path,
                                                                   monkeypatch):
  config = export.ExportConfig(export_dir=str(tmp_path / "autorec"), warmup_requests=False)
  export.export_model(small_model.model, small_model.layout, config)
  existing_versions = publish.existing_versions
  stale_listings = [[]]  # the first listing predates another exporter publishing version 1

  def listing(export_dir):
    return stale_listings.pop() if stale_listings else existing_versions(export_dir)

  monkeypatch.setattr(publish, "existing_versions", listing)
  path = export.export_model(small_model.model, small_model.layout, config)
  assert path == os.path.join(config.export_dir, "2")
  assert sorted(os.listdir(config.export_dir)) == ["1", "2"]


def test_export_validates_its_config(small_model, tmp_path):
  for bad in ({"top_k": 0}, {"fold_in_l2": 0.0}, {"popularity_weight": float("nan")}):
    config = export.ExportConfig(export_dir=str(tmp_path / "autorec"), **bad)
    with pytest.raises(ValueError, match=next(iter(bad))):
      export.export_model(small_model.model, small_model.layout, config)


ML100K_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def recall_at_10(top: np.ndarray, liked: list[set]) -> float:
  """Mean over users of |top 10 & liked| / min(10, |liked|)."""
  hits = np.array([[item in held_out for item in row[:10]] for row, held_out in zip(top, liked)])
  return evaluation.mean_recall_at_k(hits, np.array([len(held_out) for held_out in liked]), 10)


@pytest.mark.skipif(not (ML100K_DIR / "ml-100k" / "u.data").exists(),
                    reason="MovieLens-100K not found at ../shared/data/ml-100k")
def test_recommendations_beat_popularity_on_ml100k(tmp_path):
  from keras_autorec.data import sources
  ratings = sources.load_ratings(sources.DataConfig(dataset="ml100k", data_dir=str(ML100K_DIR)))
  split = splits.random_split(ratings, seed=0)
  trained = training.fit(split, training.ModelConfig(), training.TrainConfig(epochs=60,
                                                                            verbose=0))
  path = export.export_model(trained.model, trained.layout, export.ExportConfig(
      export_dir=str(tmp_path), top_k=10, warmup_requests=False))
  signatures = tf.saved_model.load(path).signatures
  train, test = split.train, split.test
  liked = test.rating >= 4
  users = np.unique(test.user_index[liked])
  held_out = [set(test.item_ids[test.item_index[(test.user_index == user) & liked]])
              for user in users]
  rated = [np.flatnonzero(train.user_index == user) for user in users]
  recommended = signatures["recommend"](user_id=tf.constant(train.user_ids[users].astype(object)))
  item_ids = np.full((len(users), max(r.size for r in rated)), "", dtype=object)
  values = np.zeros(item_ids.shape, np.float32)
  for row, positions in enumerate(rated):
    item_ids[row, :positions.size] = train.item_ids[train.item_index[positions]]
    values[row, :positions.size] = train.rating[positions]
  # In batches: the fold-in's float64 design matrices [B, L, k + 1] for every user at once would
  # take about 2 GB.
  folded_in = np.concatenate([
      signatures["recommend_for_ratings"](item_ids=tf.constant(item_ids[batch]),
                                          ratings=tf.constant(values[batch]))["item_ids"].numpy()
      for batch in np.array_split(np.arange(len(users)), 8)]).astype(str)
  assert not any(set(top) & set(ids) for top, ids in zip(folded_in, item_ids)), (
      "a folded-in item was recommended")
  # The popularity baseline: each user's 10 most-rated items among those they did not rate.
  most_rated = np.argsort(-np.bincount(train.item_index, minlength=train.num_items),
                          kind="stable")
  popular = []
  for positions in rated:
    seen = set(train.item_index[positions])
    popular.append([train.item_ids[item] for item in most_rated if item not in seen][:10])
  popularity = recall_at_10(popular, held_out)
  # Measured over these 863 users: popularity 0.154, recommend 0.186, fold-in 0.178 (0.127 and
  # 0.115 ranked by predicted rating alone, popularity_weight=0).
  assert recall_at_10(recommended["item_ids"].numpy().astype(str), held_out) > popularity
  assert recall_at_10(folded_in, held_out) > popularity


_BLOCK_TENSORFLOW_SERVING = '''
import sys


class _BlockTensorflowServing:
  """Makes tensorflow_serving unimportable, as in an install without the serving extra."""

  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] == "tensorflow_serving":
      raise ModuleNotFoundError(f"No module named {name!r}")
    return None


sys.meta_path.insert(0, _BlockTensorflowServing())
'''


def test_plain_install_without_tensorflow_serving_trains_and_exports(tmp_path):
  blocker = tmp_path / "blocker"
  blocker.mkdir()
  (blocker / "sitecustomize.py").write_text(_BLOCK_TENSORFLOW_SERVING)
  repo = pathlib.Path(__file__).resolve().parents[1]
  env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{repo}"}
  probe = subprocess.run([sys.executable, "-c", "import tensorflow_serving.apis"], env=env,
                         capture_output=True, text=True, timeout=60)
  assert probe.returncode == 1 and "No module named 'tensorflow_serving" in probe.stderr
  ratings = synthetic_ratings()
  ratings_file = tmp_path / "ratings.csv"
  ratings_file.write_text("user,item,stars\n" + "".join(
      f"{user},{item},{stars:g}\n"
      for user, item, stars in zip(ratings.user_ids[ratings.user_index],
                                   ratings.item_ids[ratings.item_index], ratings.rating)))
  export_dir = tmp_path / "saved_models"
  result = subprocess.run(
      [sys.executable, "-m", "keras_autorec.train", "--dataset=csv",
       f"--ratings_file={ratings_file}", "--user_column=user", "--item_column=item",
       "--rating_column=stars", "--hidden_units=8", "--epochs=2", "--verbose=0",
       f"--export_dir={export_dir}", f"--metrics_file={tmp_path / 'metrics.json'}"],
      cwd=repo, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  version = export_dir / "1"
  assert (version / "saved_model.pb").is_file()
  assert (version / export.ASSETS_EXTRA / export.METADATA_FILE).is_file()
  assert not (version / export.ASSETS_EXTRA / export.WARMUP_FILE).exists()
  notices = [line for line in (result.stdout + result.stderr).splitlines()
             if "No warmup requests" in line]
  assert len(notices) == 1 and "keras-autorec[serving]" in notices[0]
  assert "rating" in tf.saved_model.load(str(version)).signatures["serving_default"](
      user_id=tf.constant(["u1"]), item_id=tf.constant(["i1"]))
