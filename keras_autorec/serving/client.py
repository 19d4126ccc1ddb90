"""gRPC client and command line for an AutoRec SavedModel served by TensorFlow Serving.

Usage:
  python -m keras_autorec.serving.client --server=localhost:8500 [--model_name=autorec]
      [--model_version=N] [--timeout_seconds=10] [--json] [--rating_scale=1,5]
      [--tls [--root_certificates=ca.pem] [--client_certificate=client.pem
      --client_key=client.key] [--server_name_override=NAME]] [--header=KEY=VALUE ...]
      COMMAND [command flags]

Commands:
  predict --user_id=196,186 --item_id=242,302   rating of each (user, item) pair
  recommend --user_id=196 [--k=10]               top items for known users
  recommend_for_ratings --ratings=242:5,302:3 [--k=10]
                                                 top items for an unseen user's ratings
  similar_items --item_id=242 [--k=10]           most similar items
  metadata                                       the served version and its signatures
  complete_playlist --song_ids=525514,129701 --tags=락 [--k=10]
                                                 songs and tags completing a playlist
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from absl import app
from absl import flags
import numpy as np

from keras_autorec.serving.autorec_client import (DEFAULT_MODEL_NAME, DEFAULT_TIMEOUT_SECONDS,
                                                  AutoRecClient)
from keras_autorec.serving.client_inputs import DEFAULT_MAX_REQUEST_BYTES
from keras_autorec.serving.errors import (DeadlineExceededError, InvalidInputError,
                                          InvalidRequestError, ModelNotFoundError,
                                          SecureConnectionError, ServerUnavailableError,
                                          ServingError)

# The client (keras_autorec.serving.autorec_client) and its errors (serving.errors) are
# importable from here, the command's module, as from their own.
__all__ = ["AutoRecClient", "DeadlineExceededError", "InvalidInputError", "InvalidRequestError",
           "ModelNotFoundError", "SecureConnectionError", "ServerUnavailableError", "ServingError",
           "CommandLineError", "define_flags", "run_command", "main"]

COMMANDS = ("predict", "recommend", "recommend_for_ratings", "similar_items", "metadata",
            "complete_playlist")
# The command flags each command accepts; the first entries are required.
_COMMAND_FLAGS = {
    "predict": (("user_id", "item_id"), ()),
    "recommend": (("user_id",), ("k",)),
    "recommend_for_ratings": (("ratings",), ("k",)),
    "similar_items": (("item_id",), ("k",)),
    "metadata": ((), ()),
    "complete_playlist": ((), ("song_ids", "tags", "k")),
}
_ALL_COMMAND_FLAGS = ("user_id", "item_id", "ratings", "k", "song_ids", "tags")


class CommandLineError(Exception):
  """The command line is wrong."""


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Define the command line flags on `flag_values`.

  Kept out of import time so that importing the client never clashes with other flags.
  """
  flags.DEFINE_string("server", "localhost:8500", "TF Serving gRPC endpoint, host:port.",
                      flag_values=flag_values)
  flags.DEFINE_string("model_name", DEFAULT_MODEL_NAME, "Served model name.",
                      flag_values=flag_values)
  flags.DEFINE_integer("model_version", None, "Model version; default: the server's latest.",
                       lower_bound=0, flag_values=flag_values)
  flags.DEFINE_float("timeout_seconds", DEFAULT_TIMEOUT_SECONDS, "Deadline of each call.",
                     lower_bound=0.0, flag_values=flag_values)
  flags.DEFINE_bool("json", False, "Print JSON instead of a table.", flag_values=flag_values)
  flags.DEFINE_list("user_id", None, "User id(s), comma-separated.", flag_values=flag_values)
  flags.DEFINE_list("item_id", None, "Item id(s), comma-separated.", flag_values=flag_values)
  flags.DEFINE_list("ratings", None, "One user's ratings as item_id:rating,...",
                    flag_values=flag_values)
  flags.DEFINE_list("song_ids", None, "complete_playlist: the playlist's song ids.",
                    flag_values=flag_values)
  flags.DEFINE_list("tags", None, "complete_playlist: the playlist's tags.",
                    flag_values=flag_values)
  flags.DEFINE_integer("k", None, "Number of items to return; default: all exported.",
                       lower_bound=1, flag_values=flag_values)
  flags.DEFINE_list("rating_scale", None, "lowest,highest rating of the model, e.g. 1,5: "
                    "--ratings outside it are rejected before sending.", flag_values=flag_values)
  flags.DEFINE_integer("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES,
                       "Largest request sent; larger batches are split.", lower_bound=1,
                       flag_values=flag_values)
  flags.DEFINE_bool("tls", False, "Connect with TLS.", flag_values=flag_values)
  flags.DEFINE_string("root_certificates", None, "PEM CA bundle file that signed the server's "
                      "certificate; default: the system's roots. With --tls.",
                      flag_values=flag_values)
  flags.DEFINE_string("client_certificate", None, "PEM client certificate file, for servers "
                      "that require one (mutual TLS). With --tls and --client_key.",
                      flag_values=flag_values)
  flags.DEFINE_string("client_key", None, "PEM private key file of --client_certificate.",
                      flag_values=flag_values)
  flags.DEFINE_string("server_name_override", None, "Host name the server's certificate must "
                      "name, if not --server's host. With --tls.", flag_values=flag_values)
  flags.DEFINE_multi_string("header", [], "KEY=VALUE header sent with every call (repeatable), "
                            "e.g. authorization=Bearer ...; values are never printed.",
                            flag_values=flag_values)


def run_command(argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS) -> int:
  """Run the command in `argv` (positional args left after flag parsing); return the exit code."""
  try:
    command = _parse_command(argv, flag_values)
    with AutoRecClient(flag_values.server, flag_values.model_name, flag_values.model_version,
                       flag_values.timeout_seconds, tls=flag_values.tls,
                       root_certificates=flag_values.root_certificates,
                       client_certificate=flag_values.client_certificate,
                       client_key=flag_values.client_key,
                       server_name_override=flag_values.server_name_override,
                       metadata=_parse_headers(flag_values.header),
                       max_request_bytes=flag_values.max_request_bytes,
                       rating_scale=_parse_rating_scale(flag_values.rating_scale)) as client:
      result = _run(client, command, flag_values)
  except (CommandLineError, ServingError, ValueError, TypeError) as error:
    # Server details can span lines (TensorFlow op errors); keep the message to one line.
    print("error: " + " ".join(str(error).split()), file=sys.stderr)
    return 2 if isinstance(error, CommandLineError) else 1
  print(json.dumps(result, indent=2, allow_nan=False) if flag_values.json
        else _format_table(command, result))
  return 0


def _parse_command(argv: Sequence[str], flag_values: flags.FlagValues) -> str:
  arguments = list(argv[1:])
  if len(arguments) != 1 or arguments[0] not in COMMANDS:
    raise CommandLineError(f"expected exactly one command out of {', '.join(COMMANDS)}; "
                     f"got {' '.join(arguments) or 'none'}")
  command = arguments[0]
  required, optional = _COMMAND_FLAGS[command]
  missing = [name for name in required if flag_values[name].value is None]
  if missing:
    raise CommandLineError(f"{command} needs --{', --'.join(missing)}")
  unused = [name for name in _ALL_COMMAND_FLAGS
            if flag_values[name].present and name not in required + optional]
  if unused:
    raise CommandLineError(f"{command} does not take --{', --'.join(unused)}")
  return command


def _parse_ratings(pairs: Sequence[str]) -> tuple[list[str], list[float]]:
  item_ids, ratings = [], []
  for pair in pairs:
    item_id, separator, rating = pair.rpartition(":")
    try:
      if not separator or not item_id or not math.isfinite(float(rating)):
        raise ValueError
      ratings.append(float(rating))
    except ValueError:
      raise CommandLineError(f"--ratings entries must be item_id:rating with a finite rating, "
                             f"got {pair!r}") from None
    item_ids.append(item_id)
  return item_ids, ratings


def _parse_rating_scale(bounds: Sequence[str] | None) -> tuple[float, float] | None:
  if bounds is None:
    return None
  try:
    low, high = map(float, bounds)
  except ValueError:
    raise CommandLineError(f"--rating_scale must be lowest,highest, got "
                           f"{','.join(bounds)!r}") from None
  return low, high


def _parse_headers(headers: Sequence[str]) -> list[tuple[str, str]]:
  pairs = []
  for position, header in enumerate(headers, start=1):
    name, separator, value = header.partition("=")
    if not separator or not name.strip():
      # The entry may be a token given without its name: it is not echoed.
      raise CommandLineError(f"--header number {position} must be KEY=VALUE")
    pairs.append((name.strip(), value))
  return pairs


def _run(client: AutoRecClient, command: str, flag_values: flags.FlagValues) -> Any:
  """The command's result as JSON-ready records."""
  k = flag_values.k
  if command == "predict":
    ratings = client.predict(flag_values.user_id, flag_values.item_id)
    return [{"user_id": user_id, "item_id": item_id, "rating": _json_float(rating)}
            for user_id, item_id, rating in zip(flag_values.user_id, flag_values.item_id, ratings)]
  if command == "recommend":
    return _ranked_records("user_id", flag_values.user_id,
                           *client.recommend(flag_values.user_id, k))
  if command == "recommend_for_ratings":
    rated_item_ids, ratings = _parse_ratings(flag_values.ratings)
    item_ids, scores = client.recommend_for_ratings([rated_item_ids], [ratings], k)
    return _ranked_records("ratings", [",".join(flag_values.ratings)], item_ids, scores)
  if command == "similar_items":
    return _ranked_records("item_id", flag_values.item_id,
                           *client.similar_items(flag_values.item_id, k))
  if command == "complete_playlist":
    return _completion_records(client, flag_values.song_ids or [], flag_values.tags or [], k)
  return client.metadata()


def _completion_records(client: AutoRecClient, song_ids: list[str], tags: list[str],
                        k: int | None) -> list[dict[str, Any]]:
  """The top k songs, then all exported tags, completing one playlist, as ranked records."""
  if not song_ids and not tags:
    raise CommandLineError("complete_playlist needs --song_ids or --tags")
  songs, song_scores, tag_names, tag_scores = client.complete_playlist(
      [song_ids], [tags], k)
  return (_ranked_records("playlist", ["songs"], songs, song_scores)
          + _ranked_records("playlist", ["tags"], tag_names, tag_scores))


def _ranked_records(query_name: str, queries: Sequence[str], item_ids: np.ndarray,
                    scores: np.ndarray) -> list[dict[str, Any]]:
  return [{query_name: query,
           "items": [{"item_id": item_id, "score": _json_float(score)}
                     for item_id, score in zip(row_item_ids, row_scores)]}
          for query, row_item_ids, row_scores in zip(queries, item_ids, scores)]


def _json_float(value: np.floating) -> float | None:
  # The shortest decimal that round-trips the float32, so 3.9 prints as 3.9 and not
  # 3.9000000953674316; non-finite scores (e.g. padding) become null to keep the JSON valid.
  value = np.float32(value)
  return float(str(value)) if np.isfinite(value) else None


def _format_table(command: str, result: Any) -> str:
  if command == "predict":
    header = ("user_id", "item_id", "rating")
    rows = [(r["user_id"], r["item_id"], _format_score(r["rating"])) for r in result]
  elif command == "metadata":
    header = ("signature", "kind", "name", "dtype", "shape")
    rows = [(signature_name, kind, name, tensor["dtype"], _format_shape(tensor["shape"]))
            for signature_name, signature in result["signatures"].items()
            for kind in ("inputs", "outputs")
            for name, tensor in signature[kind].items()]
    title = f"model {result['model_name']} version {result['version']}"
    return title + "\n" + _align([header] + rows)
  else:
    query_name = next(iter(result[0])) if result else "query"
    header = (query_name, "rank", "item_id", "score")
    rows = [(record[query_name], str(rank), item["item_id"], _format_score(item["score"]))
            for record in result
            for rank, item in enumerate(record["items"], start=1)]
  return _align([header] + rows)


def _format_score(score: float | None) -> str:
  return "-" if score is None else f"{score:.4f}"


def _format_shape(shape: list[int | None] | None) -> str:
  if shape is None:
    return "unknown"
  return "[" + ", ".join("?" if dim is None else str(dim) for dim in shape) + "]"


def _align(rows: Sequence[Sequence[str]]) -> str:
  widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
  return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                   for row in rows)


def main(argv: Sequence[str]) -> int:
  """absl entry point: run the command given on the command line."""
  return run_command(argv, flags.FLAGS)


if __name__ == "__main__":
  define_flags()
  app.run(main)
