"""One implicit-feedback run: AutoRec beside popularity, EASE and item-kNN on one split.

Model choices (AutoRec's loss, EASE's L2) are made on the validation rows; the test rows are
scored once, for the chosen configuration of each method.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import numpy as np

from keras_autorec import evaluation
from keras_autorec.implicit import baselines, fit, ranking
from keras_autorec.implicit.protocol import HeldOut, ImplicitSplit

METHODS = ("popularity", "item_knn", "ease", "autorec")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """What to compare: AutoRec's candidate losses and EASE's candidate L2 weights."""

  fit: fit.FitConfig = fit.FitConfig()
  losses: Sequence[str] = ("multinomial", "weighted_squared")
  ease_l2_weights: Sequence[float] = (10.0, 100.0, 500.0, 2000.0)
  ease_max_items: int = baselines.DEFAULT_EASE_MAX_ITEMS
  batch_size: int = 256


def _column_metrics(scorer, held_out: HeldOut, groups: Sequence[tuple],
                    batch_size: int) -> list[dict[str, float]]:
  """Each (columns, unknown, ks) group's NDCG@max(ks) and Recall@k; one scorer pass for all."""
  tops = ranking.top_k_by_columns(scorer, held_out.inputs,
                                  [(columns, max(ks)) for columns, _, ks in groups], batch_size)
  metrics = []
  for top, (columns, unknown, ks) in zip(tops, groups):
    # A catalog smaller than k is ranked whole; the slots past its end are misses.
    top = np.pad(top, ((0, 0), (0, max(ks) - top.shape[1])), constant_values=-1)
    targets = held_out.targets[:, columns].tocsr()
    hits = evaluation.ranking_hits(top - columns.start, targets)
    num_relevant = np.diff(targets.indptr) + unknown
    metrics.append({"ndcg": evaluation.mean_ndcg_at_k(hits, num_relevant, max(ks)),
                    **{f"recall@{k}": evaluation.mean_recall_at_k(hits, num_relevant, k)
                       for k in ks}})
  return metrics


def evaluate(scorer, split: ImplicitSplit, held_out: HeldOut,
             batch_size: int = 256) -> dict[str, float]:
  """The protocol's metrics of `scorer` on `held_out`; "objective" is what selection maximises.

  melon: song NDCG@100, tag NDCG@10 and their challenge score; held_out_users: NDCG@100,
  Recall@20 and Recall@50 (Liang et al. 2018).
  """
  catalog = split.catalog
  if split.protocol == "melon":
    songs, tags = _column_metrics(
        scorer, held_out, [(catalog.song_columns(), held_out.unknown_songs, (100,)),
                           (catalog.tag_columns(), held_out.unknown_tags, (10,))], batch_size)
    score = evaluation.melon_score(songs["ndcg"], tags["ndcg"])
    return {"song_ndcg@100": songs["ndcg"], "tag_ndcg@10": tags["ndcg"], "melon_score": score,
            "objective": score}
  items, = _column_metrics(scorer, held_out,
                           [(catalog.song_columns(), held_out.unknown_songs, (20, 50, 100))],
                           batch_size)
  return {"ndcg@100": items["ndcg"], "recall@20": items["recall@20"],
          "recall@50": items["recall@50"], "objective": items["ndcg"]}


def _autorec(split: ImplicitSplit, config: ExperimentConfig) -> tuple[dict, object]:
  candidates = []
  for loss in config.losses:
    fit_config = dataclasses.replace(config.fit, loss=loss)
    start = time.perf_counter()
    model, history = fit.fit(
        split.train, fit_config,
        lambda m: evaluate(fit.ModelScorer(m), split, split.val, config.batch_size)["objective"])
    best = max(history, key=lambda record: record["validation"])
    logging.info("AutoRec loss=%s: best validation %.4f at epoch %d", loss, best["validation"],
                 best["epoch"])
    candidates.append(({"loss": loss, "epochs": best["epoch"],
                        "fit_seconds": time.perf_counter() - start,
                        **{key: float(np.mean([record[key] for record in history]))
                           for key in ("epoch_seconds", "epoch_cpu_seconds")}},
                       best["validation"], model))
  chosen, _, model = max(candidates, key=lambda candidate: candidate[1])
  chosen["validation_by_loss"] = {c[0]["loss"]: c[1] for c in candidates}
  return chosen, fit.ModelScorer(model)


def _ease(split: ImplicitSplit, config: ExperimentConfig) -> tuple[dict, object]:
  best = None
  for l2_weight in config.ease_l2_weights:
    scorer = baselines.Ease(split.train, l2_weight, config.ease_max_items)
    objective = evaluate(scorer, split, split.val, config.batch_size)["objective"]
    logging.info("EASE l2_weight=%g: validation %.4f", l2_weight, objective)
    if best is None or objective > best[1]:
      best = ({"l2_weight": l2_weight}, objective, scorer)
  return best[0], best[2]


def run(split: ImplicitSplit, config: ExperimentConfig,
        methods: Sequence[str] = METHODS) -> dict:
  """{method: {"val": metrics, "test": metrics, "chosen": settings}} for each method."""
  results = {}
  for method in methods:
    start = time.perf_counter()
    if method == "popularity":
      chosen, scorer = {}, baselines.MostPopular(split.train)
    elif method == "item_knn":
      chosen, scorer = {}, baselines.ItemKnn(split.train)
    elif method == "ease":
      chosen, scorer = _ease(split, config)
    elif method == "autorec":
      chosen, scorer = _autorec(split, config)
    else:
      raise ValueError(f"unknown method {method!r}")
    results[method] = {"val": evaluate(scorer, split, split.val, config.batch_size),
                       "test": evaluate(scorer, split, split.test, config.batch_size),
                       "chosen": chosen, "seconds": time.perf_counter() - start,
                       "scorer": scorer}
    logging.info("%s: %s", method, {k: v for k, v in results[method].items() if k != "scorer"})
  return results
