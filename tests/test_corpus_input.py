"""`--corpus` must be text: a binary file (NUL bytes, not UTF-8) is a one-line error naming the file, through the
real CLI, before anything is written; real UTF-8 text (multi-byte characters included) still reads."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bertnas.cli import main
from bertnas.data.corpus import TEXT_CHECK_BYTES, read_corpus
from bertnas.errors import BertnasError


def _binary_file(path: Path) -> Path:
    """A real binary file of the kind passed by mistake: a saved torch tensor (a zip archive)."""
    torch.save(torch.arange(4096, dtype=torch.float32), path)
    return path


def _supernet_error(capsys, teacher: Path, corpus: Path, out: Path) -> str:
    code = main(["nasbert", "supernet", "--teacher", str(teacher), "--corpus", str(corpus), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err[-1500:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bertnas: error: "), err[-1500:]
    assert not out.exists()  # refused before the run directory is made
    return lines[0]


def test_binary_corpus_is_refused_by_the_cli_in_a_subprocess(tmp_path, tiny_teacher):
    corpus = _binary_file(tmp_path / "weights.pt")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "bertnas.cli", "nasbert", "supernet", "--teacher", str(tiny_teacher),
                           "--corpus", str(corpus), "--out", str(out), "--threads", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("bertnas: error: corpus file ") and str(corpus) in lines[0]
    assert "NUL bytes" in lines[0] and "binary" in lines[0] and "UTF-8 text" in lines[0]
    assert not out.exists() and "supernet trained" not in proc.stdout


def test_not_utf8_and_utf16_files_are_refused(tmp_path, tiny_teacher, capsys):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("un café très réussi\nune fin décevante\n".encode("latin-1"))
    err = _supernet_error(capsys, tiny_teacher, latin1, tmp_path / "o1")
    assert str(latin1) in err and "not valid UTF-8" in err and "byte 6" in err

    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("a good film\na dull film\n", encoding="utf-16")
    err = _supernet_error(capsys, tiny_teacher, utf16, tmp_path / "o2")
    assert str(utf16) in err and "UTF-16" in err and "convert it to UTF-8" in err


def test_binary_files_inside_folders_and_glue_folders_are_named(tmp_path, tiny_teacher, capsys):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("a good film\n")
    bad = _binary_file(folder / "b.txt")  # a binary file with a text name, among good ones
    err = _supernet_error(capsys, tiny_teacher, folder, tmp_path / "o1")
    assert str(bad) in err and "NUL bytes" in err

    glue = tmp_path / "glue"
    glue.mkdir()
    _binary_file(glue / "train.tsv")
    err = _supernet_error(capsys, tiny_teacher, glue, tmp_path / "o2")
    assert str(glue / "train.tsv") in err and "NUL bytes" in err

    # invalid UTF-8 past the checked block of a GLUE file: still a one-line error, not a UnicodeDecodeError
    late = tmp_path / "late"
    late.mkdir()
    rows = "sentence\tlabel\n" + "a fine and long enough sentence\t1\n" * (TEXT_CHECK_BYTES // 30)
    (late / "train.tsv").write_bytes(rows.encode() + "caf\u00e9\t0\n".encode("latin-1"))
    with pytest.raises(BertnasError, match="not valid UTF-8 past its first"):
        read_corpus(str(late))


def test_utf8_text_still_reads(tmp_path):
    """Multi-byte characters, one of them cut by the end of the checked block, are text."""
    head = "x" * (TEXT_CHECK_BYTES - 1)  # "é" (2 bytes) straddles the block's end
    path = tmp_path / "utf8.txt"
    path.write_text(f"{head}é\nüber gut — ein Film\n日本語の文\n", encoding="utf-8")
    assert read_corpus(str(path)) == [f"{head}é", "über gut — ein Film", "日本語の文"]
    short = tmp_path / "short.txt"
    short.write_bytes("naïve".encode()[:3])  # a whole file that ends inside a character is not UTF-8
    with pytest.raises(BertnasError, match="not valid UTF-8"):
        read_corpus(str(short))
