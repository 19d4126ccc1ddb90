"""Implicit-feedback AutoRec beside popularity, item-kNN and EASE: Melon playlist continuation
(songs and tags) or positive-only MovieLens (Liang et al. 2018's held-out users).

  python -m keras_autorec.playlists --dataset=synthetic_melon --synthetic_playlists=5000
  python -m keras_autorec.playlists --dataset=melon --data_dir=/path/to/melon
  python -m keras_autorec.playlists --dataset=ml1m --data_dir=/work/shared/data \
      --feedback=implicit --seeds=0,1,2

Prints a table of test metrics (mean +- 95% CI over seeds) and writes them as JSON with
--metrics_file; --export_dir publishes the first seed's AutoRec with a complete_playlist
signature for TF Serving.
"""

from __future__ import annotations

# First, before anything imports TensorFlow.
from keras_autorec import quiet_tensorflow  # noqa: F401  pylint: disable=unused-import

import dataclasses
import json
import logging
import sys
import tempfile

from absl import app, flags

from keras_autorec import evaluation
from keras_autorec.data import melon, sources, synthetic_melon
from keras_autorec.implicit import experiment, feedback, fit, protocol, serving

FLAGS = flags.FLAGS
MOVIELENS = ("ml100k", "ml1m")
DATASETS = ("melon", "synthetic_melon") + MOVIELENS
METRICS = {"melon": ("melon_score", "song_ndcg@100", "tag_ndcg@10"),
           "held_out_users": ("ndcg@100", "recall@20", "recall@50")}

def define_flags() -> None:
  """Defines this command's flags."""
  # Only when run as a command: the rating commands define flags of the same names (--dataset,
  # --epochs) in absl's one registry, and the tests import them all.
  flags.DEFINE_enum("dataset", "synthetic_melon", DATASETS, "Data set.")
  flags.DEFINE_string("data_dir", None, "Directory of the Melon JSON files, or of the GroupLens "
                      "directories (ml-100k, ml-1m).")
  flags.DEFINE_enum("feedback", "implicit", ["implicit"], "MovieLens ratings are used as implicit "
                    "positives (rating >= --positive_threshold); the only mode of this command.")
  flags.DEFINE_float("positive_threshold", feedback.DEFAULT_POSITIVE_THRESHOLD,
                     "MovieLens ratings at or above it are positives.")
  flags.DEFINE_integer("synthetic_playlists", 5000, "synthetic_melon: number of playlists.")
  flags.DEFINE_integer("synthetic_songs", 10000, "synthetic_melon: number of songs.")
  flags.DEFINE_integer("synthetic_tags", 500, "synthetic_melon: number of tags.")
  flags.DEFINE_float("hide_fraction", 0.5, "Melon protocol: share of each evaluated playlist's "
                     "songs and of its tags hidden from the model.")
  flags.DEFINE_integer("holdout_playlists", 1000, "Melon: playlists of train.json held out for "
                       "each of val.json and test.json that is missing.")
  flags.DEFINE_integer("min_song_count", 2, "Songs in fewer training playlists are dropped.")
  flags.DEFINE_integer("min_tag_count", 2, "Tags in fewer training playlists are dropped.")
  flags.DEFINE_integer("num_val_users", 600, "MovieLens: held-out validation users.")
  flags.DEFINE_integer("num_test_users", 600, "MovieLens: held-out test users.")
  flags.DEFINE_list("seeds", ["0"], "Seeds of the splits and models; one run each.")
  flags.DEFINE_list("methods", ["popularity", "item_knn", "ease", "autorec"], "Methods to run.")
  flags.DEFINE_list("hidden_units", ["256"], "AutoRec hidden layer sizes.")
  flags.DEFINE_float("input_dropout", 0.5, "AutoRec input dropout (denoising).")
  flags.DEFINE_float("l2_weight", 0.0, "AutoRec L2 on kernels.")
  flags.DEFINE_list("losses", ["multinomial", "weighted_squared"],
                    "AutoRec losses to try; the best on validation is kept.")
  flags.DEFINE_float("zero_weight", 0.1, "Weight of absent items in weighted_squared.")
  flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
  flags.DEFINE_integer("batch_size", 256, "Rows per training step.")
  flags.DEFINE_integer("epochs", fit.FitConfig.epochs,
                       "Most training epochs (early stopping on validation).")
  flags.DEFINE_integer("patience", fit.FitConfig.patience,
                       "Epochs without a better validation metric before stopping.")
  flags.DEFINE_list("ease_l2_weights", ["10", "100", "500", "2000"],
                    "EASE L2 weights to try; the best on validation is kept.")
  flags.DEFINE_integer("ease_max_items", 20000, "EASE keeps at most this many frequent items.")
  flags.DEFINE_string("metrics_file", None, "Where to write the results as JSON.")
  flags.DEFINE_string("export_dir", None, "TF Serving model base path for the first seed's "
                      "AutoRec (a new integer version); unset: no export.")


def load_split(dataset: str, data_dir: str | None, seed: int, options: dict) -> protocol.ImplicitSplit:
  """The protocol's split of `dataset` for `seed`; `options` are the flags' data settings."""
  if dataset in MOVIELENS:
    ratings = sources.load_ratings(sources.DataConfig(dataset=dataset, data_dir=data_dir))
    positives = feedback.positives_from_ratings(ratings, options["positive_threshold"])
    return protocol.held_out_users_split(positives, ratings.item_ids, options["num_val_users"],
                                         options["num_test_users"], seed=seed)
  if dataset == "synthetic_melon":
    data_dir = tempfile.mkdtemp(prefix="synthetic_melon_")
    synthetic_melon.write_melon(synthetic_melon.SyntheticMelonConfig(
        num_playlists=options["synthetic_playlists"], num_songs=options["synthetic_songs"],
        num_tags=options["synthetic_tags"], seed=seed), data_dir)
  elif data_dir is None:
    raise ValueError("--dataset=melon needs --data_dir, the directory holding train.json")
  return protocol.melon_split(melon.read_melon(data_dir), options["hide_fraction"],
                              options["min_song_count"], options["min_tag_count"], seed,
                              options["holdout_playlists"])


def summarize(runs: list[dict], metric_names) -> dict:
  """{method: {metric: (mean, ci95)}} of the test metrics over runs."""
  summary = {}
  for method in runs[0]:
    summary[method] = {name: evaluation.mean_and_ci95([run[method]["test"][name] for run in runs])
                       for name in metric_names}
  return summary


def table(summary: dict, metric_names) -> str:
  """The summary as a Markdown table, methods as rows."""
  lines = ["| method | " + " | ".join(metric_names) + " |",
           "|---" * (len(metric_names) + 1) + "|"]
  for method, metrics in summary.items():
    cells = [f"{mean:.4f} ± {ci:.4f}" for mean, ci in (metrics[name] for name in metric_names)]
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def run(dataset: str, data_dir: str | None, seeds, options: dict,
        config: experiment.ExperimentConfig, methods, export_dir: str | None = None) -> dict:
  """Every seed's results, their summary and the table; exports the first seed's AutoRec."""
  runs = []
  for position, seed in enumerate(seeds):
    split = load_split(dataset, data_dir, seed, options)
    logging.info("seed %d: %d training rows, catalog %d songs + %d tags, %d val / %d test rows",
                 seed, split.train.shape[0], split.catalog.num_songs, split.catalog.num_tags,
                 split.val.num_rows, split.test.num_rows)
    seeded = dataclasses.replace(config, fit=dataclasses.replace(config.fit, seed=seed))
    results = experiment.run(split, seeded, methods)
    if position == 0 and export_dir and "autorec" in results:
      results["autorec"]["export"] = serving.export_complete_playlist(
          results["autorec"]["scorer"].model, split.catalog, export_dir)
    runs.append({method: {key: value for key, value in result.items()
                          if key != "scorer"}
                 for method, result in results.items()})
  names = METRICS[split.protocol]
  summary = summarize(runs, names)
  return {"dataset": dataset, "seeds": list(seeds), "runs": runs, "summary": summary,
          "table": table(summary, names)}


def _config_from_flags() -> experiment.ExperimentConfig:
  return experiment.ExperimentConfig(
      fit=fit.FitConfig(hidden_units=tuple(int(u) for u in FLAGS.hidden_units),
                        input_dropout=FLAGS.input_dropout, l2_weight=FLAGS.l2_weight,
                        zero_weight=FLAGS.zero_weight, learning_rate=FLAGS.learning_rate,
                        batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
                        patience=FLAGS.patience),
      losses=tuple(FLAGS.losses), ease_l2_weights=tuple(float(v) for v in FLAGS.ease_l2_weights),
      ease_max_items=FLAGS.ease_max_items)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.getLogger().setLevel(logging.INFO)
  options = {name: FLAGS[name].value for name in (
      "positive_threshold", "synthetic_playlists", "synthetic_songs", "synthetic_tags",
      "hide_fraction", "holdout_playlists", "min_song_count", "min_tag_count", "num_val_users",
      "num_test_users")}
  try:
    result = run(FLAGS.dataset, FLAGS.data_dir, [int(seed) for seed in FLAGS.seeds], options,
                 _config_from_flags(), FLAGS.methods, FLAGS.export_dir)
  except (ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  if FLAGS.metrics_file:
    with open(FLAGS.metrics_file, "w") as f:
      json.dump(result, f, indent=2, default=str)
  print(result["table"])
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
