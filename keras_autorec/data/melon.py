"""Reader for the Melon Playlist Dataset's JSON files (Kakao Arena 3: playlist continuation).

Each of `train.json`, `val.json` and `test.json` is a JSON list of playlists:
  {"id": 61281, "songs": [525514, 129701], "tags": ["락"], "plylst_title": "...",
   "like_cnt": 71, "updt_date": "2013-12-19 18:36:19.000"}
`songs` are integer song ids, `tags` strings; a playlist needs at least one of them. Every
problem (invalid JSON, a missing or mistyped field, an empty playlist, an id used twice in one
file or across the files) raises `MelonFormatError` naming the file and the playlist's position
and id. A song or tag repeated inside one playlist is kept once, in first-seen order (the real
data has such repeats; presence is what an implicit model sees).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

SPLIT_FILES = ("train.json", "val.json", "test.json")
SONG_META_FILE = "song_meta.json"
_REQUIRED_FIELDS = ("id", "songs", "tags")


class MelonFormatError(ValueError):
  """A Melon JSON file does not hold the expected playlists."""


@dataclasses.dataclass(frozen=True)
class Playlists:
  """Playlists of one file: parallel lists of ids, song-id lists and tag lists."""

  ids: list[int]
  songs: list[list[int]]
  tags: list[list[str]]
  titles: list[str]
  source: str = ""

  def __len__(self) -> int:
    return len(self.ids)


def _fail(path: str, position: int, playlist, message: str) -> MelonFormatError:
  playlist_id = playlist.get("id") if isinstance(playlist, dict) else None
  return MelonFormatError(f"{path}: playlist at index {position} (id {playlist_id!r}): {message}")


def _unique(values: list) -> list:
  return list(dict.fromkeys(values))


def _check_list(path: str, position: int, playlist: dict, field: str, kind: type) -> list:
  values = playlist[field]
  if not isinstance(values, list):
    raise _fail(path, position, playlist,
                f"field {field!r} must be a list, got {type(values).__name__}")
  for value in values:
    # bool is an int subclass, and a song id of true is a corrupt file, not song 1.
    if not isinstance(value, kind) or isinstance(value, bool):
      raise _fail(path, position, playlist,
                  f"field {field!r} must hold {kind.__name__} values, got {value!r}")
  return values


def _parse_playlist(path: str, position: int, playlist) -> tuple[int, list[int], list[str], str]:
  if not isinstance(playlist, dict):
    raise _fail(path, position, playlist,
                f"expected a JSON object, got {type(playlist).__name__}")
  missing = [field for field in _REQUIRED_FIELDS if field not in playlist]
  if missing:
    raise _fail(path, position, playlist, f"missing field(s) {', '.join(missing)}")
  playlist_id = playlist["id"]
  if not isinstance(playlist_id, int) or isinstance(playlist_id, bool):
    raise _fail(path, position, playlist, f"field 'id' must be an integer, got {playlist_id!r}")
  songs = _unique(_check_list(path, position, playlist, "songs", int))
  tags = _unique(_check_list(path, position, playlist, "tags", str))
  if not songs and not tags:
    raise _fail(path, position, playlist, "has neither songs nor tags")
  title = playlist.get("plylst_title", "")
  if not isinstance(title, str):
    raise _fail(path, position, playlist, f"field 'plylst_title' must be a string, got {title!r}")
  return playlist_id, songs, tags, title


def _parse_json(text: str, path: str):
  try:
    return json.loads(text)
  except json.JSONDecodeError as error:
    raise MelonFormatError(f"{path}: invalid JSON at line {error.lineno} column {error.colno}: "
                           f"{error.msg}") from None


def _read_text(path: str) -> str:
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except UnicodeDecodeError as error:
    raise MelonFormatError(f"{path}: not UTF-8 text: {error}") from None


def parse_playlists(text: str, path: str) -> Playlists:
  """Playlists from the JSON text of file `path` (named in errors)."""
  records = _parse_json(text, path)
  if not isinstance(records, list):
    raise MelonFormatError(f"{path}: expected a JSON list of playlists, got "
                           f"{type(records).__name__}")
  ids, songs, tags, titles = [], [], [], []
  first_position: dict[int, int] = {}
  for position, record in enumerate(records):
    playlist_id, playlist_songs, playlist_tags, title = _parse_playlist(path, position, record)
    if playlist_id in first_position:
      raise _fail(path, position, record, f"duplicate id: already used by the playlist at index "
                                          f"{first_position[playlist_id]}")
    first_position[playlist_id] = position
    ids.append(playlist_id)
    songs.append(playlist_songs)
    tags.append(playlist_tags)
    titles.append(title)
  return Playlists(ids, songs, tags, titles, source=path)


def read_playlists(path: str) -> Playlists:
  """Playlists of one Melon JSON file."""
  return parse_playlists(_read_text(path), path)


def read_song_genres(path: str) -> dict[int, list[str]]:
  """Song id -> genre codes (`song_gn_gnr_basket`) from song_meta.json."""
  records = _parse_json(_read_text(path), path)
  if not isinstance(records, list):
    raise MelonFormatError(f"{path}: expected a JSON list of songs")
  genres = {}
  for position, record in enumerate(records):
    if not isinstance(record, dict) or not isinstance(record.get("id"), int):
      raise MelonFormatError(f"{path}: song at index {position} needs an integer 'id'")
    genres[record["id"]] = list(record.get("song_gn_gnr_basket", []))
  return genres


def read_melon(data_dir: str) -> dict[str, Playlists]:
  """The splits present in `data_dir` ("train" required, "val" and "test" optional).

  Ids must be unique across the files too: the same id in two files raises MelonFormatError.
  """
  train_path = os.path.join(data_dir, "train.json")
  if not os.path.isfile(train_path):
    raise FileNotFoundError(f"Melon data needs {train_path} (the Melon Playlist Dataset's "
                            f"train.json); --data_dir points to the directory holding it")
  splits = {}
  owner: dict[int, str] = {}
  for name in SPLIT_FILES:
    path = os.path.join(data_dir, name)
    if not os.path.isfile(path):
      continue
    playlists = read_playlists(path)
    for position, playlist_id in enumerate(playlists.ids):
      if playlist_id in owner:
        raise MelonFormatError(f"{path}: playlist at index {position} (id {playlist_id}): "
                               f"duplicate id: already used in {owner[playlist_id]}")
      owner[playlist_id] = path
    splits[name.removesuffix(".json")] = playlists
    logging.info("Melon %s: %d playlists, %d song entries, %d tag entries", path,
                 len(playlists), sum(map(len, playlists.songs)), sum(map(len, playlists.tags)))
  return splits
