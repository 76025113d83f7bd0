"""bench.data: JSON array / JSON Lines reading, field checks, hashes, data-dir resolution."""

from __future__ import annotations

import hashlib
import json

import pytest

from bench.data import (
    STR_LIST,
    TEXT,
    SplitSource,
    data_hint,
    hub_offline,
    load_hub_split,
    read_lines,
    read_records,
    read_texts,
    records_sha256,
    require,
    resolve_data_dir,
    sha256_file,
)
from bench.errors import BenchError, DataError

ROWS = [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]


def test_json_array_and_jsonl_read_the_same(tmp_path):
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps(ROWS, indent=2))
    jl = tmp_path / "b.json"
    jl.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    assert read_records(arr) == ROWS
    assert read_records(jl) == ROWS


def test_jsonl_blank_lines_bom_and_empty(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text("\n" + json.dumps(ROWS[0]) + "\n\n   \n" + json.dumps(ROWS[1]))  # no final \n
    assert read_records(p) == ROWS
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS).encode())
    assert read_records(bom) == ROWS
    empty = tmp_path / "e.json"
    empty.write_text("  \n")
    assert read_records(empty) == []
    (tmp_path / "arr0.json").write_text(" [ ] \n")
    assert read_records(tmp_path / "arr0.json") == []


def test_malformed_jsonl_names_file_row_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(ROWS[0]) + "\n\n" + '{"question": "q2", "answer": }\n')
    with pytest.raises(DataError) as e:
        read_records(p)
    msg = str(e.value)
    assert str(p) in msg and "row 1" in msg and "line 3" in msg
    assert e.value.row == 1


def test_malformed_json_array_names_the_row(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[\n {"question": "q1", "answer": "a1"},\n {"question": "q2" "answer": "a2"}\n]')
    with pytest.raises(DataError) as e:
        read_records(p)
    assert str(p) in str(e.value) and e.value.row == 1 and "line 3" in str(e.value)
    # missing comma between objects / unclosed array / trailing garbage
    p.write_text('[{"a": "1"} {"a": "2"}]')
    with pytest.raises(DataError, match="expected ',' or ']'") as e:
        read_records(p)
    assert e.value.row == 0
    p.write_text('[{"a": "1"},')
    with pytest.raises(DataError, match="row 1"):
        read_records(p)
    p.write_text('[{"a": "1"}')
    with pytest.raises(DataError, match="not closed"):
        read_records(p)
    p.write_text('[{"a": "1"}] x')
    with pytest.raises(DataError, match="extra data"):
        read_records(p)


def test_rows_must_be_objects(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('[{"a": "1"}, [1, 2]]')
    with pytest.raises(DataError, match="expected a JSON object, got list") as e:
        read_records(p)
    assert e.value.row == 1
    p.write_text('{"a": "1"}\n"text"\n')
    with pytest.raises(DataError, match="line 2") as e:
        read_records(p)
    assert e.value.row == 1


def test_missing_file_and_not_utf8(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match="file not found") as e:
        read_records(missing)
    assert str(missing) in str(e.value)
    with pytest.raises(DataError, match="file not found"):
        read_lines(missing)
    with pytest.raises(DataError, match="file not found"):
        sha256_file(missing)
    bad = tmp_path / "latin1.json"
    bad.write_bytes('[{"a": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_records(bad)


def test_require_names_file_row_field():
    rec = {"question": "q", "answer": "a", "perturbed_answer": ["x", "y"]}
    require(rec, {"question": TEXT, "perturbed_answer": STR_LIST}, "f.json", 3)
    require(rec, ["question", "answer"], "f.json", 3)
    with pytest.raises(DataError) as e:
        require(rec, ["question", "paraphrased_answer"], "f.json", 7)
    assert str(e.value) == "f.json, row 7, field 'paraphrased_answer': missing field"
    assert (e.value.row, e.value.field) == (7, "paraphrased_answer")
    for bad, got in (("x", "str"), ([], "an empty list"), (["x", 1], "a list with a non-string element"),
                     (None, "null")):
        with pytest.raises(DataError, match="expected a non-empty list of strings, got " + got):
            require({**rec, "perturbed_answer": bad}, {"perturbed_answer": STR_LIST}, "f.json", 0)
    with pytest.raises(DataError, match="field 'answer': expected a non-empty string"):
        require({**rec, "answer": "  "}, {"answer": TEXT}, "f.json", 0)
    with pytest.raises(DataError, match="expected a string, got int"):
        require({**rec, "answer": 3}, ["answer"], "f.json", 0)


def test_sha256_and_records_hash(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    expected = hashlib.sha256(b'{"a": 1, "b": "\xc3\xa9"}\n').hexdigest()
    assert records_sha256([{"b": "é", "a": 1}]) == expected


def test_read_lines_plain_text(tmp_path):
    p = tmp_path / "idk.jsonl"
    p.write_text("I don't know.\n\n  Not sure.  \nNo idea.")
    assert read_lines(p) == ["I don't know.", "Not sure.", "No idea."]


def test_resolve_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("MY_ENV", raising=False)
    (tmp_path / "tofu").mkdir()
    (tmp_path / "tofu" / "full.json").write_text("[]")
    assert resolve_data_dir(tmp_path, "tofu", "full.json") == tmp_path / "tofu"
    assert resolve_data_dir(tmp_path / "tofu", "tofu", "full.json") == tmp_path / "tofu"
    assert resolve_data_dir(None, "tofu", "full.json", ("MY_ENV",)) is None
    monkeypatch.setenv("MY_ENV", str(tmp_path))
    assert resolve_data_dir(None, "tofu", "full.json", ("MY_ENV",)) == tmp_path / "tofu"
    with pytest.raises(DataError, match="neither 'full.json' nor 'muse/full.json'"):
        resolve_data_dir(tmp_path, "muse", "full.json")
    with pytest.raises(DataError, match="data directory not found"):
        resolve_data_dir(tmp_path / "absent", "tofu", "full.json")


def test_split_source_records_hashes_relative_keys(tmp_path):
    folder = tmp_path / "tofu"
    folder.mkdir()
    (folder / "forget01.json").write_text(json.dumps(ROWS))
    (folder / "extra.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    src = SplitSource(folder, "locuslab/TOFU")
    assert src.records("forget01") == ROWS
    assert src.records("extra") == [ROWS[0]]
    assert src.files == {
        "tofu/forget01.json": sha256_file(folder / "forget01.json"),
        "tofu/extra.jsonl": sha256_file(folder / "extra.jsonl"),
    }
    with pytest.raises(DataError, match="forget05.json: file not found"):
        src.records("forget05")


def test_hub_path_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    with pytest.raises(BenchError, match="HF_HUB_OFFLINE is set; pass --data-dir"):
        load_hub_split("locuslab/TOFU", "forget01")
    with pytest.raises(BenchError, match="HF_HUB_OFFLINE"):
        SplitSource(None, "locuslab/TOFU").records("forget01")


def test_string_arrays_read_as_texts_and_records(tmp_path):
    """MUSE's raw/privleak/sust files: one JSON array of strings (blank text kept: row numbers)."""
    texts = ["First article.\n\nSecond paragraph.", "", "Third \u00e9t\u00e9."]
    p = tmp_path / "forget.json"
    p.write_text(json.dumps(texts, indent=1))
    assert read_texts(p) == texts
    assert read_records(p) == [{"text": t} for t in texts]
    jl = tmp_path / "texts.jsonl"
    jl.write_text("\n".join(json.dumps(t) for t in texts) + "\n")
    assert read_texts(jl) == texts
    with pytest.raises(DataError, match="row 1: empty text") as e:
        read_texts(p, allow_blank=False)
    assert str(p) in str(e.value)
    # objects: their field (RWKU's positive.json rows carry "text")
    objs = tmp_path / "positive.json"
    objs.write_text(json.dumps([{"id": "a", "text": "t0"}, {"id": "b", "text": "t1"}]))
    assert read_texts(objs) == ["t0", "t1"]
    objs.write_text(json.dumps([{"id": "a", "text": "t0"}, {"id": "b", "body": "t1"}]))
    with pytest.raises(DataError, match="row 1, field 'text': missing field"):
        read_texts(objs)


def test_mixed_rows_and_bad_text_rows_name_the_row(tmp_path):
    p = tmp_path / "mixed.json"
    p.write_text('["a", "b", {"text": "c"}]')
    with pytest.raises(DataError, match="row 2: expected a JSON string, got object"):
        read_texts(p)
    p.write_text('["a", 3]')
    with pytest.raises(DataError, match="row 1: expected a JSON string, got int"):
        read_records(p)
    p.write_text('[7]')
    with pytest.raises(DataError, match="row 0: expected a JSON object or string, got int"):
        read_records(p)
    p.write_text('["a", "b" "c"]')
    with pytest.raises(DataError, match="row 1: malformed JSON: expected ',' or ']' after row 1"):
        read_texts(p)


def test_split_source_refuses_empty_splits(tmp_path):
    folder = tmp_path / "tofu"
    folder.mkdir()
    (folder / "forget01.json").write_text("[]")
    (folder / "retain99.json").write_text("\n")
    (folder / "texts.json").write_text("[]")
    src = SplitSource(folder, "locuslab/TOFU")
    for name in ("forget01", "retain99"):
        with pytest.raises(DataError, match=f"{name}.json: no rows"):
            src.records(name)
    assert src.records("forget01", allow_empty=True) == []
    with pytest.raises(DataError, match="texts.json: no rows"):
        src.texts("texts")
    (folder / "texts.json").write_text('["x", "y"]')
    assert src.texts("texts") == ["x", "y"] and "tofu/texts.json" in src.files


@pytest.mark.shared_data
def test_muse_string_files_read(shared_data):
    muse = shared_data / "muse_news"
    raw = read_texts(muse / "raw" / "forget.json")
    assert len(raw) == 889 and raw[821] == "" and all(isinstance(t, str) for t in raw)
    for sub, name, n in [("privleak", "forget", 100), ("privleak", "holdout", 100), ("sust", "forget_4", 887)]:
        assert len(read_texts(muse / sub / f"{name}.json")) == n


def test_data_hint_appends_what_to_do_once():
    class T:
        @data_hint("use an unchanged copy")
        def load(self, data_dir=None, limit=None):
            if limit == 1:
                raise DataError("d/f.json", "missing field", 2, "answer")
            if limit == 2:  # a nested hinted load (or an error that says what to do itself) is kept as is
                return T().load(data_dir, limit=1)
            if limit == 3:
                raise BenchError("not a data error")
            return data_dir

    assert T().load("x") == "x" and T().load(data_dir="y") == "y"
    with pytest.raises(DataError) as e:
        T().load("x", limit=1)
    assert str(e.value) == "d/f.json, row 2, field 'answer': missing field; use an unchanged copy"
    assert (e.value.path, e.value.row, e.value.field) == ("d/f.json", 2, "answer")
    with pytest.raises(DataError) as e:
        T().load("x", limit=2)
    assert str(e.value).count("use an unchanged copy") == 1
    with pytest.raises(BenchError, match="^not a data error$"):
        T().load("x", limit=3)
