import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from absl import app
from absl.testing import flagsaver

from keras_autorec import config, export, fallback, train, training
from keras_autorec.data import sources
from keras_autorec.data.splits import SplitConfig, load_splits, merge_validation_into_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO, "..", "shared", "data")
HAS_ML100K = os.path.exists(os.path.join(SHARED_DATA, "ml-100k", "u.data"))


def _write_csv(path, rows):
  with open(path, "w") as f:
    f.write("user,item,stars\n")
    for user, item, stars in rows:
      f.write(f"{user},{item},{stars}\n")


def _small_ratings(seed=0):
  rng = np.random.default_rng(seed)
  user_factors = rng.normal(size=(40, 2))
  item_factors = rng.normal(size=(30, 2))
  pairs = rng.choice(40 * 30, size=600, replace=False)
  users, items = pairs // 30, pairs % 30
  stars = np.clip(np.rint(3 + np.sum(user_factors[users] * item_factors[items], axis=1)), 1, 5)
  return [(f"user{u}", f"item{i}", int(s)) for u, i, s in zip(users, items, stars)]


def test_cli_trains_exports_and_writes_metrics(tmp_path):
  ratings_file = tmp_path / "ratings.csv"
  rows = _small_ratings()
  _write_csv(ratings_file, rows)
  stars = np.array([row[2] for row in rows], dtype=float)
  metrics_file = tmp_path / "metrics.json"
  export_dir = tmp_path / "saved_models" / "autorec"
  command = [sys.executable, "-m", "keras_autorec.train", "--dataset=csv",
             f"--ratings_file={ratings_file}", "--user_column=user", "--item_column=item",
             "--rating_column=stars", "--hidden_units=8", "--epochs=60", "--repeats=2",
             "--verbose=0", f"--export_dir={export_dir}", f"--metrics_file={metrics_file}",
             f"--model_dir={tmp_path / 'model_dir'}"]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
  assert result.returncode == 0, result.stderr
  assert "(2 runs, mean +/- 95% CI): test RMSE" in result.stdout
  # The end of the run says what was written and how to serve and query it.
  assert f"metrics: {metrics_file}\n" in result.stdout
  assert f"model: {export_dir / '1'} (" in result.stdout
  assert (f'docker run -p 8500:8500 -p 8501:8501 -v "{export_dir}:/models/autorec" '
          "-e MODEL_NAME=autorec") in result.stdout
  assert "--model_name=autorec recommend --user_id=user" in result.stdout
  metrics = json.loads(metrics_file.read_text())
  assert metrics["repeats"] == 2 and [run["seed"] for run in metrics["runs"]] == [0, 1]
  rmses = [run["test_rmse"] for run in metrics["runs"]]
  assert metrics["test_rmse_mean"] == pytest.approx(np.mean(rmses))
  assert metrics["test_rmse_ci95"] > 0
  # Better than predicting the mean rating for everything.
  assert metrics["test_rmse_mean"] < 0.9 * stars.std()
  assert sorted(os.listdir(export_dir)) == ["1"]
  assert metrics["runs"][0]["export_path"] == str(export_dir / "1")
  # Each repeat checkpoints into its own folder so that both can resume.
  assert sorted(os.listdir(tmp_path / "model_dir")) == ["seed_0", "seed_1"]


def test_summary_shows_a_confidence_interval_only_over_several_runs():
  summary = {"model": "I-AutoRec", "dataset": "ml100k", "repeats": 1, "refit": False,
             **{f"{key}_{stat}": 0.9 for key in ("test_rmse", "test_mae", "validation_rmse")
                for stat in ("mean", "ci95")}}
  assert train.summary_text(summary) == ("I-AutoRec on ml100k (1 run): test RMSE 0.9000, MAE "
                                         "0.9000; validation RMSE 0.9000")
  several = train.summary_text({**summary, "repeats": 5, "refit": True})
  assert "(5 runs, mean +/- 95% CI): test RMSE 0.9000 +/- 0.9000" in several
  assert "the refit then trained on validation too" in several
  blended = train.summary_text({**summary, "runs": [{"validation_rmse_in_sample": 0.8}]})
  assert blended.endswith("validation RMSE 0.9000 (the blend scored on the half of validation "
                          "it was not fitted on)")


def test_exports_of_other_data_are_kept_apart_or_named(tmp_path, caplog):
  assert config.default_export_dir({"dataset": "ml1m"}) == os.path.join("saved_models", "ml1m")
  assert config.default_export_dir({"dataset": "csv", "ratings_file": "/a/my.ratings.csv"}) == (
      os.path.join("saved_models", "my.ratings"))
  assert config.data_name({"dataset": "synthetic", "synthetic_shape": "ml1m"}) == "synthetic_ml1m"
  export_config = export.ExportConfig(export_dir=str(tmp_path / "shared"), top_k=5)
  train_config = training.TrainConfig(epochs=2, verbose=0)
  for name, seed in (("first", 0), ("second", 1), ("second", 1)):
    ratings_file = tmp_path / f"{name}.csv"
    _write_csv(ratings_file, _small_ratings(seed=seed))
    data_config = sources.DataConfig(dataset="csv", ratings_file=str(ratings_file),
                                     user_column="user", item_column="item",
                                     rating_column="stars")
    with caplog.at_level("INFO"):
      train.run(data_config, SplitConfig(), training.ModelConfig(hidden_units=(4,)),
                train_config, export_config=export_config)
  exported = [r for r in caplog.records if r.getMessage().startswith("Exported version")]
  assert [r.getMessage() for r in exported] == [
      f"Exported version 1 of {export_config.export_dir}",
      f"Exported version 2 of {export_config.export_dir} (version 1 was trained on first)",
      f"Exported version 3 of {export_config.export_dir}"]
  assert exported[1].levelname == "WARNING"


def test_cli_reports_the_file_and_line_of_a_malformed_file(tmp_path):
  ratings_file = tmp_path / "ratings.csv"
  ratings_file.write_text("user,item,stars\nu1,i1,4\nu2,i2\n")
  result = subprocess.run(
      [sys.executable, "-m", "keras_autorec.train", "--dataset=csv",
       f"--ratings_file={ratings_file}", "--export_dir=", "--verbose=0"],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, "PYTHONPATH": REPO})
  assert result.returncode == 1
  assert f"{ratings_file}:3" in result.stderr
  assert "Traceback" not in result.stderr


def test_cli_refuses_both_l2_lambda_and_l2_weight(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "keras_autorec.train", "--dataset=synthetic", "--l2_lambda=100",
       "--l2_weight=1e-3", "--export_dir=", "--verbose=0"],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, "PYTHONPATH": REPO})
  assert result.returncode == 1
  assert "--l2_lambda and --l2_weight" in result.stderr


def test_run_with_a_model_dir_resumes_instead_of_retraining(tmp_path):
  ratings_file = tmp_path / "ratings.csv"
  _write_csv(ratings_file, _small_ratings(seed=1))
  data_config = sources.DataConfig(dataset="csv", ratings_file=str(ratings_file),
                                   user_column="user", item_column="item", rating_column="stars")
  model_config = training.ModelConfig(hidden_units=(8,))
  train_config = training.TrainConfig(epochs=6, patience=100, verbose=0,
                                      model_dir=str(tmp_path / "run"))
  first = train.run(data_config, SplitConfig(), model_config, train_config)
  again = train.run(data_config, SplitConfig(), model_config, train_config)
  # The finished run is picked up from its checkpoint: same epochs, same best model.
  assert again["runs"][0]["epochs_run"] == first["runs"][0]["epochs_run"] == 6
  assert again["runs"][0]["test_rmse"] == pytest.approx(first["runs"][0]["test_rmse"], abs=1e-6)


@pytest.mark.skipif(not HAS_ML100K, reason="MovieLens-100K not found at ../shared/data/ml-100k")
def test_defaults_on_ml100k_beat_svd_and_export_matches(tmp_path):
  export_config = export.ExportConfig(export_dir=str(tmp_path / "autorec"), top_k=10)
  data_config = sources.DataConfig(dataset="ml100k", data_dir=SHARED_DATA)
  summary = train.run(data_config, SplitConfig(seed=0), training.ModelConfig(),
                      training.TrainConfig(verbose=0), export_config=export_config)
  metrics = summary["runs"][0]
  # Surprise's SVD scores 0.936 and SVD++ 0.913 on a seeded 90/10 split of ML-100K.
  assert metrics["test_rmse"] <= 0.900
  assert metrics["test_ratings"] == 10_000 and metrics["validation_ratings"] == 9_000
  assert 0 < metrics["test_default_predictions"] < 100
  loaded = tf.saved_model.load(metrics["export_path"])
  rating = loaded.signatures["serving_default"](user_id=tf.constant(["196", "no-such-user"]),
                                                item_id=tf.constant(["242", "242"]))["rating"]
  # An unknown user gets item 242's shrunk mean over the refit's (train + validation) ratings.
  split = merge_validation_into_train(next(load_splits(data_config, SplitConfig(seed=0))))
  biases = fallback.fit_biases(split.train)
  # The fallback beats the paper's constant 3 on the test ratings that took it.
  unseen = (~np.isin(split.test.user_index, split.train.user_index)
            | ~np.isin(split.test.item_index, split.train.item_index))
  assert unseen.sum() == metrics["test_default_predictions"]
  constant_rmse = np.sqrt(np.mean((split.test.rating[unseen] - 3.0) ** 2))
  assert metrics["test_fallback_rmse"] < 0.9 * constant_rmse
  item = list(split.train.item_ids).index("242")
  assert 1.0 <= float(rating[0]) <= 5.0
  assert float(rating[1]) == pytest.approx(
      biases.global_mean + biases.new_user_bias + biases.item_bias[item], rel=1e-5)


def test_defaults_on_synthetic_end_within_ten_percent_of_the_noise_floor():
  summary = train.run(sources.DataConfig(dataset="synthetic"), SplitConfig(seed=0),
                      training.ModelConfig(), training.TrainConfig(verbose=0))
  metrics = summary["runs"][0]
  floor = metrics["test_noise_floor_rmse"]
  assert floor == pytest.approx(0.80, abs=0.01)
  # A global mean scores 1.37x the floor and user + item biases 1.20x on this split.
  assert metrics["test_rmse"] <= 1.10 * floor


def test_cli_one_rating_file_fails_naming_the_split_counts_after_skipping_bad_lines(tmp_path):
  ratings_file = tmp_path / "ratings.csv"
  ratings_file.write_text("user,item,stars\nu1,i1,4\nu2,i2\n")
  result = subprocess.run(
      [sys.executable, "-m", "keras_autorec.train", "--dataset=csv",
       f"--ratings_file={ratings_file}", "--on_bad_lines=skip", "--export_dir=", "--verbose=0"],
      cwd=REPO, capture_output=True, text=True, timeout=120,
      env={**os.environ, "PYTHONPATH": REPO})
  assert result.returncode == 1
  assert f"{ratings_file}: skipped 1 bad lines (--on_bad_lines=skip); the first: line 3" in (
      result.stderr)
  assert (f"error: {ratings_file}: too few ratings for the requested split: 1 train, 0 "
          "validation and 0 test ratings") in result.stderr
  assert "Traceback" not in result.stderr and "nan" not in result.stdout


TINY_MELON = ["--dataset=synthetic_melon", "--synthetic_playlists=200", "--synthetic_songs=300",
              "--synthetic_tags=30", "--hidden_units=16", "--epochs=2", "--batch_size=64",
              "--losses=multinomial", "--ease_l2_weights=50"]


def _main(argv):
  """train.main on the flags of `argv`, in this process."""
  with flagsaver.flagsaver():
    train.FLAGS(["train", *argv])
    return train.main(["train"])


def test_implicit_mode_compares_the_methods_over_seeds_writes_metrics_and_exports(tmp_path, capsys):
  metrics_file, export_dir = tmp_path / "metrics.json", tmp_path / "playlists"
  assert _main([*TINY_MELON, "--seed=1", "--repeats=2", f"--metrics_file={metrics_file}",
                f"--export_dir={export_dir}"]) == 0
  printed = capsys.readouterr().out.splitlines()
  metrics = json.loads(metrics_file.read_text())
  assert metrics["dataset"] == "synthetic_melon" and metrics["seeds"] == [1, 2]
  assert printed[:6] == metrics["table"].splitlines()
  assert printed[0] == "| method | melon_score | song_ndcg@100 | tag_ndcg@10 |"
  assert [line.split(" | ")[0] for line in printed[2:6]] == [
      "| popularity", "| item_knn", "| ease", "| autorec"]
  scores = [run["autorec"]["test"]["melon_score"] for run in metrics["runs"]]
  assert metrics["summary"]["autorec"]["melon_score"][0] == pytest.approx(np.mean(scores))
  assert 0 < min(scores) and metrics["summary"]["autorec"]["melon_score"][1] > 0
  # --hidden_units, --epochs and --losses reached the model.
  assert all(run["autorec"]["chosen"]["epochs"] <= 2 for run in metrics["runs"])
  assert os.listdir(export_dir) == ["1"]
  assert metrics["runs"][0]["autorec"]["export"] == str(export_dir / "1")
  assert "export" not in metrics["runs"][1]["autorec"]
  example = metrics["example_playlist"]
  assert printed[6:] == [
      f"metrics: {metrics_file}",
      f"model: {export_dir / '1'} (TF Serving serves the newest version of {export_dir})",
      f'serve it: docker run -p 8500:8500 -p 8501:8501 -v "{export_dir}:/models/playlists" '
      f"-e MODEL_NAME=playlists {train.SERVING_IMAGE}",
      "query it: python -m keras_autorec.serving.client --server=localhost:8500 "
      f"--model_name=playlists complete_playlist --song_ids={','.join(example['song_ids'])} "
      f"--tags={example['tags'][0]} --k=10"]


def test_implicit_mode_on_ratings_takes_the_data_flags(ratings_file, capsys):
  assert _main(["--dataset=csv", f"--ratings_file={ratings_file}", "--user_column=user",
                "--item_column=item", "--rating_column=rating", "--feedback=implicit",
                "--positive_threshold=3", "--num_val_users=5", "--num_test_users=5",
                "--methods=popularity,ease", "--export_dir="]) == 0
  printed = capsys.readouterr().out.splitlines()
  assert printed[0] == "| method | ndcg@100 | recall@20 | recall@50 |"
  assert [line.split(" | ")[0] for line in printed[2:]] == ["| popularity", "| ease"]


@pytest.mark.parametrize("argv, message", [
    (["--dataset=melon", "--feedback=explicit"], "--dataset=melon holds playlists: implicit "
     "feedback only"),
    (["--dataset=ml1m", "--losses=multinomial", "--hide_fraction=0.2"],
     "--hide_fraction, --losses do not apply to --feedback=explicit"),
    (["--dataset=ml1m", "--feedback=implicit", "--optimizer=adam", "--norefit"],
     "--optimizer, --refit do not apply to --feedback=implicit with --dataset=ml1m"),
    (["--dataset=melon", "--positive_threshold=3", "--ratings_file=x.csv"],
     "--ratings_file, --positive_threshold do not apply to --feedback=implicit with "
     "--dataset=melon"),
    (["--dataset=synthetic_melon", "--holdout_playlists=10"], "--holdout_playlists does not "
     "apply"),
    (["--dataset=ml1m", "--feedback=implicit", "--synthetic_songs=10"], "--synthetic_songs"),
    (["--dataset=synthetic_melon", "--batch_size=0"], "--batch_size must be at least 1"),
    (["--dataset=synthetic_melon", "--methods=ease,svd"], "--methods: unknown svd"),
    (["--dataset=synthetic_melon", "--losses=mse"], "--losses: unknown mse"),
])
def test_flags_the_mode_does_not_take_are_errors(argv, message):
  with pytest.raises(app.UsageError, match=re.escape(message)):
    _main(argv)
