"""Fuzzing (hypothesis): random file contents for the GLUE and custom readers, random values and types for the
settings, and random config files and flags through the command line, may succeed or raise BertnasError (the
one-line `bertnas: error: ...`), never any other exception."""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from bertnas.config import RunConfig  # noqa: E402
from bertnas.data.readers import load_task, read_custom, read_glue  # noqa: E402
from bertnas.errors import BertnasError  # noqa: E402

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# cells: plain words and labels, numbers (finite or not), and the characters that break naive parsers
_cell = st.one_of(
    st.sampled_from(["0", "1", "2", "good", "bad", "-1", "1.5", "nan", "inf", "-inf", "1e309", "", " ", '"', "'",
                     "\\", "\t", ",", "null", "true", "[1]", "{}", "\x00", "\r", "\u2028", "é", "\ufeff"]),
    st.text(max_size=12),
)
_names = st.sampled_from(["sentence", "label", "sentence1", "sentence2", "question", "#1 String", "#2 String",
                          "Quality", "gold_label", "score", "text", "x", ""])


def _table(sep: str):
    header = st.lists(_names, min_size=0, max_size=5)
    rows = st.lists(st.lists(_cell, min_size=0, max_size=6), min_size=0, max_size=8)
    return st.tuples(header, rows).map(lambda hr: "\n".join(sep.join(r) for r in [hr[0], *hr[1]]))


def _jsonl():
    value = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                      _cell, st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                   max_size=2))
    record = st.one_of(st.dictionaries(_names, value, max_size=4), value)
    line = st.one_of(record.map(json.dumps), _cell)
    return st.lists(line, max_size=8).map("\n".join)


def _content(kind: str):
    text = _table("\t" if kind == "tsv" else ",") if kind in ("tsv", "csv") else _jsonl()
    return st.one_of(text.map(lambda t: t.encode("utf-8")), st.binary(max_size=200),
                     text.map(lambda t: t.encode("utf-16")), text.map(lambda t: t.encode("latin-1", "replace")))


def _expect_only_bertnas_errors(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except BertnasError:
        pass


@pytest.fixture(scope="module")
def scratch():
    root = Path(tempfile.mkdtemp(prefix="bertnas-fuzz-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("kind", ["tsv", "csv", "jsonl"])
def test_custom_readers(scratch, kind):
    @FUZZ
    @given(train=_content(kind), dev=_content(kind),
           labels=st.sampled_from([None, "regression", "good,bad", "0,1,2", ",", "a,a"]),
           pair=st.sampled_from([None, "sentence2"]))
    def check(train, dev, labels, pair):
        (scratch / f"train.{kind}").write_bytes(train)
        (scratch / f"dev.{kind}").write_bytes(dev)
        _expect_only_bertnas_errors(read_custom, scratch / f"train.{kind}", scratch / f"dev.{kind}",
                                    text_pair_column=pair, labels=labels)

    check()


@pytest.mark.parametrize("task", ["sst2", "mrpc", "cola", "stsb", "mnli", "qqp"])
def test_glue_readers(scratch, task):
    folder = scratch / f"glue-{task}"
    folder.mkdir(exist_ok=True)

    @settings(FUZZ, max_examples=20)
    @given(train=_content("tsv"), dev=_content("tsv"))
    def check(train, dev):
        (folder / "train.tsv").write_bytes(train)
        (folder / ("dev_matched.tsv" if task == "mnli" else "dev.tsv")).write_bytes(dev)
        _expect_only_bertnas_errors(read_glue, task, folder)
        _expect_only_bertnas_errors(load_task, task, folder)

    check()


_FIELDS = [f.name for f in fields(RunConfig)]
_values = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
                    st.sampled_from(["1", "0", "1e3", "nan", "inf", "-1", "true", "cpu", "cuda:7", "auto", "bf16", "1.5"]),
                    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@FUZZ
@given(values=st.dictionaries(st.one_of(st.sampled_from(_FIELDS), st.sampled_from([f.replace("_", "-") for f in _FIELDS]),
                                        st.text(max_size=8)), _values, max_size=6))
def test_run_config_values(values):
    try:
        RunConfig().update(values, "fuzz").validate()
    except BertnasError:
        pass


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_files_and_flags_through_the_cli(scratch, suffix, capsys):
    """`bertnas search --out RUN --config FILE [flags]`: every mistake in the file or the flags ends as exit 2
    (argparse's own usage errors included), never an exception; RUN is not a run, so a good config also ends
    with the one-line error that names the missing run."""
    from bertnas.cli import main

    entries = st.dictionaries(st.one_of(st.sampled_from(_FIELDS), st.text(max_size=6), st.integers()), _values,
                              max_size=4)
    doc = entries.map(lambda d: json.dumps(d) if suffix == ".json" else _yaml(d))
    flag = st.sampled_from(["--search-epochs", "--beta", "--device", "--seed", "--amp", "--labels", "--tau-min",
                            "--teacher-dtype", "--max-seq-len"])
    argv = st.lists(st.one_of(flag, st.sampled_from(["nan", "-1", "0", "x", "1e999", "", "--", "cpu"])), max_size=4)

    @settings(FUZZ, max_examples=25)
    @given(content=st.one_of(doc.map(str.encode), st.binary(max_size=80)), extra=argv)
    def check(content, extra):
        cfg = scratch / f"cfg{suffix}"
        cfg.write_bytes(content)
        try:
            code = main(["search", "--out", str(scratch / "not-a-run"), "--config", str(cfg), *extra])
        except SystemExit as exc:  # argparse: usage error on stderr, exit 2
            code = exc.code
        assert code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err

    check()


def _yaml(d: dict) -> str:
    import yaml

    try:
        return yaml.safe_dump(d)
    except yaml.YAMLError:
        return "{}"
