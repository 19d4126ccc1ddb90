"""Tests for keras_autorec.implicit.command (the implicit experiment over seeds)."""

from __future__ import annotations

import pytest

from keras_autorec.implicit import command, experiment, fit, splits

SMALL_MELON = splits.ImplicitDataConfig(synthetic_playlists=300, synthetic_songs=400,
                                        synthetic_tags=40)


def test_synthetic_melon_run_compares_methods():
  config = experiment.ExperimentConfig(
      fit=fit.FitConfig(hidden_units=(32,), epochs=6, learning_rate=0.01, batch_size=64),
      losses=("multinomial",), ease_l2_weights=(50.0,))
  result = command.run(SMALL_MELON, [0], config, experiment.METHODS)
  test = {method: metrics["test"] for method, metrics in result["runs"][0].items()}
  # The planted genres make every personalised method far better than popularity.
  for method in ("item_knn", "ease", "autorec"):
    assert test[method]["melon_score"] > 2 * test["popularity"]["melon_score"], test
  assert result["table"].splitlines()[0] == (
      "| method | melon_score | song_ndcg@100 | tag_ndcg@10 |")
  assert len(result["table"].splitlines()) == 6
  assert result["runs"][0]["autorec"]["chosen"]["loss"] == "multinomial"
  assert "export" not in result["runs"][0]["autorec"] and "example_playlist" not in result


def test_summary_is_the_mean_and_ci_of_each_method_over_runs():
  runs = [{"ease": {"test": {"ndcg@100": 0.4, "recall@20": 0.3}}},
          {"ease": {"test": {"ndcg@100": 0.5, "recall@20": 0.3}}}]
  summary = command.summarize(runs, ("ndcg@100", "recall@20"))
  mean, ci95 = summary["ease"]["ndcg@100"]
  # t(0.975, 1 dof) = 12.706; standard error 0.05.
  assert mean == pytest.approx(0.45) and ci95 == pytest.approx(12.706 * 0.05, rel=1e-3)
  assert summary["ease"]["recall@20"] == pytest.approx((0.3, 0.0))
  assert command.table(summary, ("ndcg@100",)).splitlines() == [
      "| method | ndcg@100 |", "|---|---|", f"| ease | 0.4500 ± {ci95:.4f} |"]
