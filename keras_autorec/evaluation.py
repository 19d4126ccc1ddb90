"""Rating predictions, RMSE/MAE of a model (with a fallback for unseen ids) or an exported
SavedModel, and top-N metrics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from keras_autorec.config import DEFAULT_RATING
from keras_autorec.data import row_datasets
from keras_autorec.fallback import RatingBiases
from keras_autorec.data.layout import RowLayout
from keras_autorec.data.ratings import Ratings

DEFAULT_BATCH_SIZE = 8192  # Ratings per serving_default call of `evaluate_saved_model`.


@dataclasses.dataclass(frozen=True)
class RatingErrors:
  """RMSE and MAE of predictions; how many pairs took the fallback, and its RMSE on them."""

  rmse: float
  mae: float
  num_ratings: int
  num_default: int
  fallback_rmse: float = math.nan  # NaN when no pair took the fallback.

  def as_dict(self, prefix: str) -> dict[str, float | int]:
    return {f"{prefix}_rmse": self.rmse, f"{prefix}_mae": self.mae,
            f"{prefix}_ratings": self.num_ratings, f"{prefix}_default_predictions": self.num_default,
            f"{prefix}_fallback_rmse": self.fallback_rmse}


def predict_pairs(model, layout: RowLayout, rows: np.ndarray, columns: np.ndarray,
                  default_rating: float = DEFAULT_RATING, batch_size: int = 256) -> np.ndarray:
  """Clipped predictions at (row, column) layout positions; -1 positions get the default rating.

  The model sees only the training ratings of each row, whatever pairs are asked for.
  """
  predictions = np.full(rows.shape[0], default_rating, dtype=np.float32)
  seen = np.flatnonzero((rows >= 0) & (columns >= 0))
  if seen.size == 0:
    return predictions
  order = seen[np.argsort(rows[seen], kind="stable")]
  needed_rows, pairs_per_row = np.unique(rows[order], return_counts=True)
  # Each batch's pairs are read as soon as it is reconstructed, so memory stays bounded by one
  # batch of dense rows however many rows are needed.
  first_pair = 0
  first_row = 0
  for _, inputs in row_datasets.rows_dataset(layout.train, needed_rows, batch_size):
    reconstruction = model.predict_ratings(inputs).numpy()
    counts = pairs_per_row[first_row:first_row + reconstruction.shape[0]]
    pairs = order[first_pair:first_pair + counts.sum()]
    offsets = np.repeat(np.arange(counts.shape[0]), counts)
    predictions[pairs] = reconstruction[offsets, columns[pairs]]
    first_row += reconstruction.shape[0]
    first_pair += pairs.shape[0]
  return predictions


def evaluate_ratings(model, layout: RowLayout, ratings: Ratings,
                     default_rating: float = DEFAULT_RATING,
                     batch_size: int = 256, fallback: RatingBiases | None = None,
                     blend=None) -> RatingErrors:
  """RMSE and MAE of the model on held-out ratings.

  Pairs whose user or item has no training ratings get `fallback`'s prediction (see
  `keras_autorec.fallback`), or `default_rating` without one. With a
  `keras_autorec.blend.RatingBlend`, pairs of a seen user and item are scored blended.
  """
  if ratings.num_ratings == 0:
    return RatingErrors(math.nan, math.nan, 0, 0)
  rows, columns = layout.positions(ratings)
  predictions = predict_pairs(model, layout, rows, columns, default_rating, batch_size)
  unseen = (rows < 0) | (columns < 0)
  if blend is not None:
    predictions[~unseen] = blend.apply(rows[~unseen], columns[~unseen], predictions[~unseen])
  if fallback is not None:
    predictions[unseen] = fallback.predict(ratings.user_index[unseen], ratings.item_index[unseen])
  error = ratings.rating - predictions
  fallback_rmse = float(np.sqrt(np.mean(np.square(error[unseen])))) if unseen.any() else math.nan
  return RatingErrors(rmse=float(np.sqrt(np.mean(np.square(error)))),
                      mae=float(np.mean(np.abs(error))), num_ratings=ratings.num_ratings,
                      num_default=int(np.sum(unseen)), fallback_rmse=fallback_rmse)


def mean_and_ci95(values) -> tuple[float, float]:
  """Mean and half-width of the 95% Student-t confidence interval (0 for one value)."""
  values = np.asarray(values, dtype=np.float64)
  if values.size < 2:
    return float(values.mean()), 0.0
  # Two-sided 97.5% Student-t quantiles for 1..30 degrees of freedom; 1.96 beyond.
  t_table = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
             2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
             2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
  dof = values.size - 1
  t = t_table[dof - 1] if dof <= len(t_table) else 1.96
  return float(values.mean()), float(t * values.std(ddof=1) / math.sqrt(values.size))


def _decode(ids: np.ndarray) -> np.ndarray:
  return np.asarray([id_.decode("utf-8") for id_ in ids], dtype=object)


def evaluate_saved_model(saved_model_dir: str, ratings: Ratings,
                         batch_size: int = DEFAULT_BATCH_SIZE) -> RatingErrors:
  """RMSE and MAE of an exported model's serving_default predictions for `ratings`.

  Users or items without training ratings get the model's own default rating; `num_default`
  counts those pairs, read from the id vocabularies exported with the model.
  """
  if ratings.num_ratings == 0:
    return RatingErrors(math.nan, math.nan, 0, 0)
  loaded = tf.saved_model.load(saved_model_dir)
  rate = loaded.signatures["serving_default"]
  user_ids = ratings.user_ids[ratings.user_index].astype(str)
  item_ids = ratings.item_ids[ratings.item_index].astype(str)
  predictions = np.concatenate([
      rate(user_id=tf.constant(user_ids[start:start + batch_size]),
           item_id=tf.constant(item_ids[start:start + batch_size]))["rating"].numpy()
      for start in range(0, ratings.num_ratings, batch_size)])
  seen = (np.isin(user_ids, _decode(loaded.user_ids.numpy()))
          & np.isin(item_ids, _decode(loaded.item_ids.numpy())))
  error = ratings.rating - predictions
  return RatingErrors(rmse=float(np.sqrt(np.mean(np.square(error)))),
                      mae=float(np.mean(np.abs(error))), num_ratings=ratings.num_ratings,
                      num_default=int(np.sum(~seen)))


def _scores_to_top_k(best_scores: np.ndarray, best_items: np.ndarray, scores: np.ndarray,
                     items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """Merges candidate scores [U, b] of `items` [b] into running top-k lists [U, k]."""
  all_scores = np.concatenate([best_scores, scores], axis=1)
  all_items = np.concatenate([best_items, np.broadcast_to(items, scores.shape)], axis=1)
  order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
  return (np.take_along_axis(all_scores, order, axis=1),
          np.take_along_axis(all_items, order, axis=1))


def top_k_items(model, layout: RowLayout, users: np.ndarray, k: int,
                batch_size: int = 256) -> np.ndarray:
  """Item positions [len(users), k] of the highest predictions, training items excluded.

  Rows are streamed in batches, so memory stays O(users * (k + batch)) whatever the orientation.
  Slots without a candidate are -1.
  """
  best_scores = np.full((users.size, k), -np.inf, dtype=np.float32)
  best_items = np.full((users.size, k), -1, dtype=np.int64)
  train = layout.train
  row_ids = np.arange(layout.num_rows) if layout.item_based else users
  user_slot = np.full(layout.num_columns if layout.item_based else layout.num_rows, -1)
  user_slot[users] = np.arange(users.size)
  for batch_rows, inputs in row_datasets.rows_dataset(train, row_ids, batch_size):
    batch_rows = batch_rows.numpy()
    scores = np.array(model.predict_ratings(inputs))
    lengths = train.row_lengths()[batch_rows]
    positions = np.concatenate([np.arange(train.row_splits[row], train.row_splits[row + 1])
                                for row in batch_rows])
    scores[np.repeat(np.arange(batch_rows.size), lengths), train.columns[positions]] = -np.inf
    if layout.item_based:
      best_scores, best_items = _scores_to_top_k(best_scores, best_items, scores[:, users].T,
                                                 batch_rows, k)
    else:
      slots = user_slot[batch_rows]
      best_scores[slots], best_items[slots] = _scores_to_top_k(
          best_scores[slots], best_items[slots], scores, np.arange(layout.num_columns), k)
  return np.where(np.isfinite(best_scores), best_items, -1)


def top_n_metrics(model, layout: RowLayout, test: Ratings, k: int,
                  relevant_rating: float) -> dict[str, float | int]:
  """NDCG@k and recall@k (hits / min(k, relevant)) over test users with relevant ratings.

  Relevant items are the user's held-out ratings >= relevant_rating; items the user rated in
  training are not ranked. Users without training ratings cannot be ranked for and are counted
  apart; relevant items unseen in training count as relevant but can never be hit.
  """
  rows, columns = layout.positions(test)
  user_pos, item_pos = (columns, rows) if layout.item_based else (rows, columns)
  relevant = test.rating >= relevant_rating
  users = np.unique(user_pos[relevant & (user_pos >= 0)])
  skipped = np.unique(test.user_index[relevant & (user_pos < 0)]).size
  if users.size == 0:
    return {f"ndcg@{k}": math.nan, f"recall@{k}": math.nan, "top_n_users": 0,
            "top_n_users_unseen": skipped}
  top = top_k_items(model, layout, users, k)
  hits = np.zeros(top.shape, dtype=bool)
  num_relevant = np.zeros(users.size, dtype=np.int64)
  for slot, user in enumerate(users):
    mine = relevant & (user_pos == user)
    hits[slot] = np.isin(top[slot], item_pos[mine & (item_pos >= 0)]) & (top[slot] >= 0)
    num_relevant[slot] = mine.sum()
  return {f"ndcg@{k}": mean_ndcg_at_k(hits, num_relevant, k),
          f"recall@{k}": mean_recall_at_k(hits, num_relevant, k),
          "top_n_users": int(users.size), "top_n_users_unseen": int(skipped)}


# Top-N ranking metrics (of `top_n_metrics` and of implicit feedback, `keras_autorec.implicit`):
# rows of ranked columns against each row's hidden relevant items. NDCG is keras-rs's; keras-rs's
# RecallAtK divides by all relevant items, so Liang et al.'s recall (divided by min(k, relevant))
# is here.

MELON_SONG_WEIGHT = 0.85  # Kakao Arena 3's score: 0.85 x song NDCG@100 + 0.15 x tag NDCG@10.


def ranking_hits(top: np.ndarray, relevant_rows) -> np.ndarray:
  """Whether each ranked column [R, k] (-1: empty slot) is in its row of `relevant_rows` (CSR)."""
  hits = np.zeros(top.shape, dtype=bool)
  for row in range(top.shape[0]):
    relevant = relevant_rows.indices[relevant_rows.indptr[row]:relevant_rows.indptr[row + 1]]
    hits[row] = np.isin(top[row], relevant) & (top[row] >= 0)
  return hits


def mean_ndcg_at_k(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> float:
  """Mean binary NDCG@k of ranked hits [R, >= k] over rows with relevant items; the ideal list
  holds min(k, relevant) items.

  Computed by keras_rs.metrics.NDCG on each row's top k followed by its missed relevant items
  (ranked below k, so they count only in the ideal DCG). NaN without any relevant item.
  """
  num_relevant = np.asarray(num_relevant)
  hits = hits[num_relevant > 0, :k].astype(np.float32)
  if hits.shape[0] == 0:
    return math.nan
  missed = np.maximum(num_relevant[num_relevant > 0] - hits.sum(axis=1), 0).astype(np.int64)
  # A power of two of padding, so that the metric's traced graph is reused across calls.
  width = k + 2 ** int(np.ceil(np.log2(max(1, int(missed.max())))))
  labels = np.zeros((hits.shape[0], width), dtype=np.float32)
  labels[:, :k] = hits
  labels[:, k:] = np.arange(width - k) < missed[:, None]
  # Strictly decreasing scores over the top k; everything after ties below them.
  scores = np.zeros(labels.shape, dtype=np.float32)
  scores[:, :k] = np.arange(k, 0, -1, dtype=np.float32)
  metric = _ndcg_metric(k)
  metric.reset_state()
  metric.update_state(labels, scores)
  return float(metric.result())


_NDCG_METRICS = {}


def _ndcg_metric(k: int):
  """One keras_rs NDCG@k per k: building and tracing one costs about a second."""
  if k not in _NDCG_METRICS:
    import keras_rs  # Imported here: the rating metrics above do not need it.
    _NDCG_METRICS[k] = keras_rs.metrics.NDCG(k=k)
  return _NDCG_METRICS[k]


def mean_recall_at_k(hits: np.ndarray, num_relevant: np.ndarray, k: int) -> float:
  """Mean recall@k of Liang et al. 2018 (hits in the top k / min(k, relevant)) over rows with
  relevant items; NaN without any."""
  num_relevant = np.asarray(num_relevant, dtype=np.float64)
  mine = num_relevant > 0
  if not mine.any():
    return math.nan
  return float(np.mean(hits[mine, :k].sum(axis=1) / np.minimum(k, num_relevant[mine])))


def melon_score(song_ndcg_at_100: float, tag_ndcg_at_10: float) -> float:
  """The Melon challenge score of mean song NDCG@100 and mean tag NDCG@10."""
  return MELON_SONG_WEIGHT * song_ndcg_at_100 + (1.0 - MELON_SONG_WEIGHT) * tag_ndcg_at_10
