"""The implicit-feedback experiment as `python -m keras_autorec.train --feedback=implicit` runs it:
each seed's split and methods, the first seed's AutoRec exported, the test metrics summarised.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from keras_autorec import evaluation
from keras_autorec.implicit import experiment, serving
from keras_autorec.implicit.splits import ImplicitDataConfig, load_split

METRICS = {"melon": ("melon_score", "song_ndcg@100", "tag_ndcg@10"),
           "held_out_users": ("ndcg@100", "recall@20", "recall@50")}


def summarize(runs: list[dict], metric_names: Sequence[str]) -> dict:
  """{method: {metric: (mean, ci95)}} of the test metrics over runs."""
  summary = {}
  for method in runs[0]:
    summary[method] = {name: evaluation.mean_and_ci95([run[method]["test"][name] for run in runs])
                       for name in metric_names}
  return summary


def table(summary: dict, metric_names: Sequence[str]) -> str:
  """The summary as a Markdown table, methods as rows."""
  lines = ["| method | " + " | ".join(metric_names) + " |",
           "|---" * (len(metric_names) + 1) + "|"]
  for method, metrics in summary.items():
    cells = [f"{mean:.4f} ± {ci:.4f}" for mean, ci in (metrics[name] for name in metric_names)]
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def run(data_config: ImplicitDataConfig, seeds: Sequence[int],
        config: experiment.ExperimentConfig,
        methods: Sequence[str] = experiment.METHODS, export_dir: str | None = None) -> dict:
  """Every seed's results, their summary and its table; with `export_dir`, publishes the first
  seed's AutoRec there (a new version with the complete_playlist signature)."""
  if not seeds:
    raise ValueError("no seeds to run: --repeats must be at least 1")
  runs, example = [], None
  for position, seed in enumerate(seeds):
    split = load_split(data_config, seed)
    logging.info("seed %d: %d training rows, catalog %d songs + %d tags, %d val / %d test rows",
                 seed, split.train.shape[0], split.catalog.num_songs, split.catalog.num_tags,
                 split.val.num_rows, split.test.num_rows)
    seeded = dataclasses.replace(config, fit=dataclasses.replace(config.fit, seed=seed))
    results = experiment.run(split, seeded, methods)
    if position == 0 and export_dir and "autorec" in results:
      results["autorec"]["export"] = serving.export_complete_playlist(
          results["autorec"]["scorer"].model, split.catalog, export_dir)
      example = {"song_ids": [str(i) for i in split.catalog.song_ids[:2]],
                 "tags": [str(t) for t in split.catalog.tag_ids[:1]]}
    runs.append({method: {key: value for key, value in result.items() if key != "scorer"}
                 for method, result in results.items()})
  names = METRICS[split.protocol]
  summary = summarize(runs, names)
  result = {"dataset": data_config.data.dataset, "seeds": list(seeds), "runs": runs,
            "summary": summary, "table": table(summary, names)}
  if example:
    result["example_playlist"] = example  # Ids the export knows, for a first query.
  return result
