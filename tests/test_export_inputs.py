"""The export's signatures under hostile inputs: in-graph checks, limits and a fuzz test.

Every request gets either finite outputs of the documented shape or InvalidArgumentError (what TF
Serving answers as INVALID_ARGUMENT), through `tf.saved_model.load` and through a TF1 session fed
like TF Serving's C++, which does not check shapes against the signature.
"""

from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
import tensorflow as tf

from keras_autorec import export, training
from keras_autorec.data.layout import build_layout
import conftest

TOP_K = 5
MAX_BATCH_SIZE = 6
MAX_RATING_SLOTS = 24
RATING_SCALE = (1.0, 5.0)
INPUTS = {"serving_default": {"user_id": (1, tf.string), "item_id": (1, tf.string)},
          "recommend": {"user_id": (1, tf.string)},
          "recommend_for_ratings": {"item_ids": (2, tf.string), "ratings": (2, tf.float32)},
          "similar_items": {"item_id": (1, tf.string)}}
VARIANTS = list(itertools.product([True, False], [True, False]))
VARIANT_IDS = [f"{'I' if item_based else 'U'}-AutoRec-{'table' if table else 'no-table'}"
               for item_based, table in VARIANTS]


class SessionSignatures:
  """Runs SignatureDefs in a TF1 session without Python's feed shape check, as TF Serving does."""

  def __init__(self, path: str):
    self.graph = tf.Graph()
    self.session = tf.compat.v1.Session(graph=self.graph)
    with self.graph.as_default():
      self.signature_defs = tf.compat.v1.saved_model.loader.load(
          self.session, ["serve"], path).signature_def

  def __call__(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    signature = self.signature_defs[name]
    names = sorted(signature.outputs)
    fetches = [self.graph.get_tensor_by_name(signature.outputs[key].name) for key in names]
    feeds = {self.graph.get_tensor_by_name(signature.inputs[key].name).ref(): value
             for key, value in inputs.items()}
    # Session.run would refuse shapes the placeholder does not declare; TF Serving does not, and
    # neither does the private _do_run below it.
    outputs = self.session._do_run(None, [], fetches, feeds, None, None)
    return dict(zip(names, outputs))


class LoadedSignatures:
  """Runs the signatures of `tf.saved_model.load`."""

  def __init__(self, path: str):
    self.signatures = tf.saved_model.load(path).signatures

  def __call__(self, name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    outputs = self.signatures[name](**{key: tf.constant(value) for key, value in inputs.items()})
    return {key: value.numpy() for key, value in outputs.items()}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
  """Untrained tiny exports (weights do not matter here) with and without the rating table."""
  ratings = conftest.make_ratings()
  paths = {}
  for item_based, table in VARIANTS:
    layout = build_layout(ratings, item_based=item_based)
    model = training.build_model(training.ModelConfig(item_based=item_based, hidden_units=(4,)),
                                 layout)
    config = export.ExportConfig(
        export_dir=str(tmp_path_factory.mktemp("export") / "autorec"), top_k=TOP_K,
        rating_table_max_cells=10**9 if table else 0, max_batch_size=MAX_BATCH_SIZE,
        max_rating_slots=MAX_RATING_SLOTS, warmup_requests=False)
    paths[item_based, table] = (export.export_model(model, layout, config),
                                set(layout.user_ids().astype(str)),
                                set(layout.item_ids().astype(str)))
  return paths


@pytest.fixture(scope="module")
def runners(exports) -> dict:
  return {(variant, kind): runner(path) for variant, (path, _, _) in exports.items()
          for kind, runner in (("load", LoadedSignatures), ("session", SessionSignatures))}


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
def variant(request):
  return request.param


@pytest.fixture(params=["load", "session"])
def run(request, runners, variant):
  return runners[variant, request.param]


@pytest.fixture
def ids(exports, variant) -> tuple[list[str], list[str]]:
  _, user_ids, item_ids = exports[variant]
  return sorted(user_ids), sorted(item_ids)


def strings(values) -> np.ndarray:
  return np.asarray(values, dtype=object)


def floats(values) -> np.ndarray:
  return np.asarray(values, dtype=np.float32)


def check_answer(name: str, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
  """Outputs of the documented shape, finite except the -inf of empty top-K slots."""
  batch = next(iter(inputs.values())).shape[0]
  if name == "serving_default":
    assert outputs["rating"].shape == (batch,)
    assert np.all((outputs["rating"] >= RATING_SCALE[0]) & (outputs["rating"] <= RATING_SCALE[1]))
    return
  item_ids = outputs["item_ids"]
  assert item_ids.shape == (batch, TOP_K)
  empty = item_ids == b""
  for key in ("scores", "ratings") if name != "similar_items" else ("scores",):
    assert outputs[key].shape == (batch, TOP_K)
    assert not np.isnan(outputs[key]).any()
    assert np.all(np.isfinite(outputs[key]) == ~empty)
  if "ratings" in outputs:
    listed = outputs["ratings"][~empty]
    assert np.all((listed >= RATING_SCALE[0]) & (listed <= RATING_SCALE[1]))


def test_nan_or_inf_on_padding_and_unknown_items_is_ignored(run, ids):
  _, item_ids = ids
  plain = run("recommend_for_ratings", {"item_ids": strings([item_ids[:2] + ["", ""]]),
                                        "ratings": floats([[5, 2, 0, 0]])})
  for junk in (np.nan, np.inf, -np.inf, 1e30):
    noisy = run("recommend_for_ratings",
                {"item_ids": strings([item_ids[:2] + ["", "no-such-item"]]),
                 "ratings": floats([[5, 2, junk, junk]])})
    for key in plain:
      np.testing.assert_array_equal(noisy[key], plain[key])
  check_answer("recommend_for_ratings", {"item_ids": strings([[""]])}, plain)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 100.0, -5.0, 0.5, 5.001])
def test_non_finite_or_out_of_scale_rating_of_a_known_item_is_invalid_argument(run, ids, bad):
  _, item_ids = ids
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"input ratings must be finite and within the rating scale \[1, 5\]"):
    run("recommend_for_ratings", {"item_ids": strings([item_ids[:2], item_ids[2:4]]),
                                  "ratings": floats([[5, 2], [3, bad]])})


def wrong_shape_requests(user_ids, item_ids):
  """(signature, inputs, message) with a wrong rank or mismatched shapes, all once broadcast."""
  users, items = strings(user_ids[:2]), strings(item_ids[:3])
  return [
      ("serving_default", {"user_id": strings([user_ids[:2]]), "item_id": strings([item_ids[:2]])},
       "input user_id must have rank 1"),
      ("serving_default", {"user_id": users[:1], "item_id": items},
       "inputs user_id and item_id must have the same shape"),
      ("serving_default", {"user_id": strings(user_ids[0]), "item_id": strings(item_ids[0])},
       "must have rank 1"),
      ("recommend", {"user_id": strings([user_ids[:2]])}, "input user_id must have rank 1"),
      ("recommend", {"user_id": strings(user_ids[0])}, "input user_id must have rank 1"),
      ("similar_items", {"item_id": strings([[item_ids[0]]])}, "input item_id must have rank 1"),
      ("recommend_for_ratings", {"item_ids": strings([item_ids[:2]]), "ratings": floats([[5]])},
       "inputs item_ids and ratings must have the same shape"),
      ("recommend_for_ratings", {"item_ids": strings([item_ids[:2]]),
                                 "ratings": floats([[5, 4], [3, 2]])}, "same shape"),
      ("recommend_for_ratings", {"item_ids": items, "ratings": floats([5, 4, 3])},
       "input item_ids must have rank 2"),
      ("recommend_for_ratings", {"item_ids": strings([[item_ids[:2]]]),
                                 "ratings": floats([[[5, 4]]])}, "must have rank 2"),
  ]


def test_wrong_ranks_and_mismatched_shapes_are_invalid_argument(run, ids):
  for name, inputs, message in wrong_shape_requests(*ids):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
      run(name, inputs)


def test_batches_above_the_export_limits_are_invalid_argument(run, ids):
  user_ids, item_ids = ids
  check_answer("recommend", {"user_id": strings(user_ids[:MAX_BATCH_SIZE])},
               run("recommend", {"user_id": strings(user_ids[:MAX_BATCH_SIZE])}))
  too_many = [("recommend", {"user_id": strings(user_ids[:MAX_BATCH_SIZE + 1])}),
              ("similar_items", {"item_id": strings(item_ids[:MAX_BATCH_SIZE + 1])}),
              ("recommend_for_ratings", {"item_ids": strings([[""]] * (MAX_BATCH_SIZE + 1)),
                                         "ratings": floats([[0]] * (MAX_BATCH_SIZE + 1))})]
  for name, inputs in too_many:
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f"at most {MAX_BATCH_SIZE} rows .*max_batch_size"):
      run(name, inputs)
  width = MAX_RATING_SLOTS // 2 + 1
  with pytest.raises(tf.errors.InvalidArgumentError, match="max_rating_slots"):
    run("recommend_for_ratings", {"item_ids": strings([[""] * width] * 2),
                                  "ratings": floats([[0] * width] * 2)})


def test_export_records_its_limits(exports):
  path, _, _ = exports[True, True]
  with open(f"{path}/{export.ASSETS_EXTRA}/{export.METADATA_FILE}") as metadata_file:
    config = json.load(metadata_file)["export_config"]
  assert (config["max_batch_size"], config["max_rating_slots"]) == (MAX_BATCH_SIZE,
                                                                    MAX_RATING_SLOTS)


# ---------------------------------------------------------------------------------------------
# Fuzz test of the four signatures.

_NON_UTF8 = b"\xff\xfe\xc3"
_JUNK_FLOATS = [np.nan, np.inf, -np.inf, 1e38, -1e38, 0.0, 0.999, 5.5, -5.0, 100.0]


@st.composite
def requests(draw, user_ids: list[str], item_ids: list[str]):
  """(signature, inputs): random ranks, shapes, dtypes and values, often almost valid."""
  name = draw(st.sampled_from(sorted(INPUTS)))
  batch, width = draw(st.integers(0, MAX_BATCH_SIZE + 2)), draw(st.integers(0, 6))
  strings_ = st.one_of(st.sampled_from(user_ids[:5] + item_ids[:5]), st.just(""),
                       st.just(_NON_UTF8), st.text(max_size=4), st.just("x" * 300))
  floats_ = st.one_of(st.sampled_from([1.0, 2.5, 5.0]), st.sampled_from(_JUNK_FLOATS),
                      st.floats(width=32))
  inputs = {}
  for key, (rank, dtype) in INPUTS[name].items():
    shape = [batch, width][:rank]
    if draw(st.integers(0, 5)) == 0:
      shape = draw(st.lists(st.integers(0, 3), min_size=0, max_size=3))
    if draw(st.integers(0, 9)) == 0:
      dtype = draw(st.sampled_from([tf.int32, tf.float32, tf.float64, tf.string]))
    size = int(np.prod(shape))
    if dtype == tf.string:
      value = strings(draw(st.lists(strings_, min_size=size, max_size=size))).reshape(shape)
    elif dtype == tf.int32:
      value = np.arange(size, dtype=np.int32).reshape(shape)
    else:
      value = np.asarray(draw(st.lists(floats_, min_size=size, max_size=size)),
                         dtype=dtype.as_numpy_dtype).reshape(shape)
    inputs[key] = value
  return name, inputs


def expected_valid(name: str, inputs: dict[str, np.ndarray], item_ids: set) -> bool | None:
  """Whether the signature must answer; None for a wrong dtype (may fail before the graph)."""
  if any(tf.as_dtype(value.dtype if value.dtype != object else tf.string) != dtype
         for value, (_, dtype) in zip(inputs.values(), INPUTS[name].values())):
    return None
  shapes = {value.shape for value in inputs.values()}
  rank = next(iter(INPUTS[name].values()))[0]
  if len(shapes) > 1 or len(next(iter(shapes))) != rank:
    return False
  shape = next(iter(shapes))
  if name != "serving_default" and shape[0] > MAX_BATCH_SIZE:
    return False
  if name == "recommend_for_ratings":
    if np.prod(shape) > MAX_RATING_SLOTS:
      return False
    known = np.vectorize(lambda id_: id_ in item_ids, otypes=[bool])(inputs["item_ids"]) \
        if inputs["item_ids"].size else np.zeros(shape, bool)
    ratings = inputs["ratings"]
    in_scale = np.isfinite(ratings) & (ratings >= RATING_SCALE[0]) & (ratings <= RATING_SCALE[1])
    return bool(np.all(in_scale | ~known))
  return True


@pytest.mark.parametrize("variant_index", range(len(VARIANTS)), ids=VARIANT_IDS)
def test_fuzzed_requests_get_finite_answers_or_invalid_argument(runners, exports, variant_index):
  variant = VARIANTS[variant_index]
  _, user_ids, item_ids = exports[variant]
  item_id_bytes = {id_.encode() for id_ in item_ids} | item_ids
  outcomes = {"answer": 0, "invalid_argument": 0, "dtype_error": 0}

  @settings(max_examples=60, derandomize=True, deadline=None, database=None,
            suppress_health_check=list(HealthCheck))
  @given(requests(sorted(user_ids), sorted(item_ids)), st.sampled_from(["load", "session"]))
  def check(request, kind):
    name, inputs = request
    valid = expected_valid(name, inputs, item_id_bytes)
    try:
      outputs = runners[variant, kind](name, inputs)
    except tf.errors.InvalidArgumentError:
      assert valid is not True, (name, inputs)
      outcomes["invalid_argument"] += 1
      return
    except (TypeError, ValueError):
      # A wrong dtype is refused at the Python level, before the graph runs.
      assert valid is None, (name, inputs)
      outcomes["dtype_error"] += 1
      return
    assert valid is True, (name, inputs)
    check_answer(name, inputs, outputs)
    outcomes["answer"] += 1

  check()
  # The examples reach both the answers and the checks, not only one of them.
  assert outcomes["answer"] >= 10 and outcomes["invalid_argument"] >= 10, outcomes
