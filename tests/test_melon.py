"""Tests for keras_autorec.data.melon."""

from __future__ import annotations

import json

import pytest

from keras_autorec.data import melon

GOOD = [{"id": 7, "songs": [3, 1, 3], "tags": ["rock", "rock", "night"], "plylst_title": "a",
         "like_cnt": 2, "updt_date": "2013-12-19 18:36:19.000"},
        {"id": 9, "songs": [], "tags": ["jazz"], "plylst_title": "", "like_cnt": 0,
         "updt_date": "2014-01-01 00:00:00.000"}]


def write(path, records):
  path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
  return str(path)


def test_reads_playlists_keeping_repeats_once_in_order(tmp_path):
  playlists = melon.read_playlists(write(tmp_path / "train.json", GOOD))
  assert playlists.ids == [7, 9]
  assert playlists.songs == [[3, 1], []]
  assert playlists.tags == [["rock", "night"], ["jazz"]]
  assert playlists.titles == ["a", ""]


def test_invalid_json_names_file_and_line(tmp_path):
  path = tmp_path / "val.json"
  path.write_text('[{"id": 1, "songs": [1],\n "tags": [}]')
  with pytest.raises(melon.MelonFormatError, match=r"val\.json: invalid JSON at line 2"):
    melon.read_playlists(str(path))


@pytest.mark.parametrize("record, message", [
    ({"id": 5, "songs": "1 2", "tags": []}, r"index 1 \(id 5\): field 'songs' must be a list"),
    ({"id": 5, "songs": [1, "2"], "tags": []}, r"index 1 \(id 5\): field 'songs' must hold int"),
    ({"id": 5, "songs": [True], "tags": []}, r"index 1 \(id 5\): field 'songs' must hold int"),
    ({"id": 5, "songs": [1], "tags": [3]}, r"index 1 \(id 5\): field 'tags' must hold str"),
    ({"id": "5", "songs": [1], "tags": []}, r"index 1 \(id '5'\): field 'id' must be an int"),
    ({"id": 5, "tags": []}, r"index 1 \(id 5\): missing field\(s\) songs"),
    ({"id": 5, "songs": [], "tags": []}, r"index 1 \(id 5\): has neither songs nor tags"),
    ([1, 2], r"index 1 \(id None\): expected a JSON object, got list"),
])
def test_bad_playlists_name_file_index_and_id(tmp_path, record, message):
  path = write(tmp_path / "test.json", [GOOD[0], record])
  with pytest.raises(melon.MelonFormatError, match=r"test\.json: playlist at " + message):
    melon.read_playlists(path)


def test_top_level_must_be_a_list(tmp_path):
  with pytest.raises(melon.MelonFormatError, match="expected a JSON list of playlists, got dict"):
    melon.read_playlists(write(tmp_path / "train.json", {"id": 1}))


def test_duplicate_id_in_one_file_names_both_positions(tmp_path):
  path = write(tmp_path / "train.json", [GOOD[0], GOOD[1], {**GOOD[1], "songs": [4]}])
  with pytest.raises(melon.MelonFormatError,
                     match=r"index 2 \(id 9\): duplicate id: already used by the playlist at "
                           r"index 1"):
    melon.read_playlists(path)


def test_duplicate_id_across_files_names_both_files(tmp_path):
  write(tmp_path / "train.json", GOOD)
  write(tmp_path / "test.json", [{**GOOD[0], "id": 11}, {**GOOD[1], "id": 7}])
  with pytest.raises(melon.MelonFormatError,
                     match=r"test\.json: playlist at index 1 \(id 7\): duplicate id: already "
                           r"used in .*train\.json"):
    melon.read_melon(str(tmp_path))


def test_read_melon_reads_present_splits_and_needs_train(tmp_path):
  with pytest.raises(FileNotFoundError, match="train.json"):
    melon.read_melon(str(tmp_path))
  write(tmp_path / "train.json", GOOD)
  write(tmp_path / "val.json", [{**GOOD[1], "id": 10}])
  splits = melon.read_melon(str(tmp_path))
  assert sorted(splits) == ["train", "val"]
  assert splits["val"].ids == [10]


def test_song_genres(tmp_path):
  path = write(tmp_path / "song_meta.json", [{"id": 0, "song_gn_gnr_basket": ["GN0100"]},
                                             {"id": 3, "song_gn_gnr_basket": []}])
  assert melon.read_song_genres(path) == {0: ["GN0100"], 3: []}
  with pytest.raises(melon.MelonFormatError, match=r"song at index 0 needs an integer 'id'"):
    melon.read_song_genres(write(tmp_path / "bad.json", [{"id": "0"}]))
