"""The experiments' results: rows of per-repeat runs with 95% CIs, as CSV, Markdown and a plot."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence

from keras_autorec import evaluation


@dataclasses.dataclass(frozen=True)
class Row:
  """One line of a results table: a labelled configuration and its per-repeat metrics."""

  label: str
  params: dict
  runs: list[dict]

  def summary(self) -> dict:
    """Mean and 95% CI of test and validation RMSE over the repeats."""
    test_mean, test_ci = evaluation.mean_and_ci95([r["test_rmse"] for r in self.runs])
    validation_mean, validation_ci = evaluation.mean_and_ci95(
        [r["validation_rmse"] for r in self.runs])
    return {"model": self.label, **self.params, "test_rmse_mean": test_mean,
            "test_rmse_ci95": test_ci, "validation_rmse_mean": validation_mean,
            "validation_rmse_ci95": validation_ci, "repeats": len(self.runs),
            "mean_best_epoch": sum(r["best_epoch"] for r in self.runs) / len(self.runs),
            "mean_train_seconds": sum(r["train_seconds"] for r in self.runs) / len(self.runs)}


def write_csv(path: str, rows: Sequence[dict]) -> None:
  """Writes dicts as CSV, with the union of their keys as columns in first-seen order."""
  fields = list(dict.fromkeys(key for row in rows for key in row))
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)


def markdown_table(title: str, setup: str, rows: Sequence[Row]) -> str:
  """A Markdown document: the title, a paragraph on the setup and the rows' summaries."""
  lines = [f"# {title}", "", setup, "",
           "| model | test RMSE | validation RMSE | repeats | mean best epoch | mean train s |",
           "| --- | --- | --- | --- | --- | --- |"]
  for row in rows:
    s = row.summary()
    lines.append(f"| {s['model']} | {s['test_rmse_mean']:.4f} +/- {s['test_rmse_ci95']:.4f} | "
                 f"{s['validation_rmse_mean']:.4f} +/- {s['validation_rmse_ci95']:.4f} | "
                 f"{s['repeats']} | {s['mean_best_epoch']:.0f} | "
                 f"{s['mean_train_seconds']:.1f} |")
  return "\n".join(lines) + "\n"


def plot_hidden_units(rows: Sequence[Row], path: str) -> None:
  """Test RMSE (mean and 95% CI) against k, as the paper's figure 2."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot

  summaries = [row.summary() for row in rows]
  figure, axes = pyplot.subplots(figsize=(5, 3.5))
  axes.errorbar([s["hidden_units"] for s in summaries], [s["test_rmse_mean"] for s in summaries],
                yerr=[s["test_rmse_ci95"] for s in summaries], marker="o", capsize=3,
                label="test")
  axes.plot([s["hidden_units"] for s in summaries], [s["validation_rmse_mean"] for s in summaries],
            marker="s", linestyle="--", label="validation")
  axes.set_xlabel("hidden units k")
  axes.set_ylabel("RMSE")
  axes.set_title("I-AutoRec: RMSE vs number of hidden units")
  axes.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  pyplot.close(figure)
