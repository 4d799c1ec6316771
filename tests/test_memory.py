"""Bounded memory (issue #8, item 3): the probes read the train features memory-mapped and give the pages back
as they go, with exactly the values (and so exactly the probes) of the tensor the knowledge cache serves; the
peak-memory benchmark's data copy and section writer."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bertnas.teacher import knowledge as kn, probes
from bertnas.teacher.probes import MappedFeatures, split_features, train_probes

ROOT = Path(__file__).resolve().parents[1]


def _rss_file_kb() -> int:
    text = Path("/proc/self/status").read_text()
    return int(next(l.split()[1] for l in text.splitlines() if l.startswith("RssFile:")))


def test_mapped_features_match_and_give_pages_back(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.standard_normal((3, 4000, 1024)).astype(np.float16)  # 24 MB
    np.save(tmp_path / "f.npy", array)
    x = MappedFeatures(tmp_path / "f.npy", release_bytes=2**62)
    assert x.shape == torch.Size(array.shape) and x.size(1) == 4000
    idx = torch.randperm(4000)[:300]
    assert torch.equal(x[:, idx], torch.from_numpy(array[:, idx.numpy()]))
    assert torch.equal(x[:, 17:2100], torch.from_numpy(array[:, 17:2100]))
    if not Path("/proc/self/status").is_file():
        return
    x.release()  # the reads above mapped most of the file already
    before = _rss_file_kb()
    x[:, 0:4000]  # maps every page of the file
    assert _rss_file_kb() - before > 15_000
    x.release()
    assert _rss_file_kb() - before < 5_000
    assert torch.equal(x[:, idx], torch.from_numpy(array[:, idx.numpy()]))  # readable after the release


def _malformed(path: Path, kind: str) -> None:
    """Write a features file that is wrong in one way (``kind``)."""
    array = np.ones((2, 5, 4), np.float16)
    if kind == "2-d":
        np.save(path, array[0])
    elif kind == "fortran":
        np.save(path, np.asfortranarray(array))
    else:
        np.save(path, array)
        whole = path.read_bytes()
        path.write_bytes({"not npy": b"garbage, not an array", "empty": b"", "cut header": whole[:20],
                          "cut data": whole[:-10]}[kind])


@pytest.mark.parametrize("kind, message", [
    ("2-d", r"f\.npy: expected a C-ordered \(L \+ 1, N, F\) array, got shape \(5, 4\)$"),
    ("fortran", r"f\.npy: expected a C-ordered \(L \+ 1, N, F\) array, got shape \(2, 5, 4\)$"),
    ("not npy", r"the magic string is not correct; expected b'\\x93NUMPY', got b'garbag'"),
    ("empty", r"EOF: reading magic string, expected 8 bytes got 0"),
    ("cut header", r"EOF: reading array header, expected \d+ bytes got 10"),
    ("cut data", None),  # numpy's own words for a file shorter than its header says (they vary by version)
])
def test_malformed_features_file_is_a_value_error_naming_the_problem(tmp_path, kind, message):
    """A features file that is not a C-ordered 3-d .npy array: a ValueError, never a mapping of wrong values."""
    _malformed(tmp_path / "f.npy", kind)
    with pytest.raises(ValueError, match=message):
        MappedFeatures(tmp_path / "f.npy")


def test_mapped_features_read_every_npy_version_with_pages_to_release(tmp_path):
    """The .npy header versions numpy writes (1.0, 2.0 for big headers) map to the same values, and the mapping
    is one that release() can give back."""
    array = np.arange(2 * 7 * 3, dtype=np.float16).reshape(2, 7, 3)
    for version in ((1, 0), (2, 0)):
        path = tmp_path / f"v{version[0]}.npy"
        with open(path, "wb") as f:
            np.lib.format.write_array(f, array, version=version)
        x = MappedFeatures(path, release_bytes=1)
        assert x._map is not None and x.shape == torch.Size(array.shape)
        for _ in range(2):  # the second read comes after a release
            assert torch.equal(x[:, 2:6], torch.from_numpy(array[:, 2:6]))
            assert torch.equal(x[:, torch.tensor([6, 0, 3])], torch.from_numpy(array[:, [6, 0, 3]]))


def _knowledge(tmp_path, tiny_teacher, synthetic_files):
    from bertnas.data.readers import load_task
    from bertnas.teacher.loading import load_teacher

    files = synthetic_files["single"]
    data = load_task("synthetic", None, files / "train.tsv", files / "dev.tsv")
    teacher = load_teacher(str(tiny_teacher), data.spec)
    return data, kn.compute_knowledge(teacher, data, 48, batch_size=16, cache_dir=tmp_path, teacher_dtype="fp32")


def test_probes_from_mapped_features_equal_probes_from_the_tensor(tmp_path, tiny_teacher, synthetic_files,
                                                                   monkeypatch):
    data, k = _knowledge(tmp_path, tiny_teacher, synthetic_files)
    assert isinstance(split_features(k, "train"), MappedFeatures)
    in_memory = kn.Knowledge(key=k.key, meta=k.meta, tensors={
        "train_features": k.features("train").clone(), "dev_features": k.features("dev").clone()})
    assert isinstance(split_features(in_memory, "train"), torch.Tensor)
    reference = train_probes(in_memory, data, epochs=2, batch_size=32)
    # pages dropped before every read: the same probes, to the bit
    monkeypatch.setattr(probes, "RELEASE_BYTES", 1)
    mapped = train_probes(kn.Knowledge(key=k.key, meta=k.meta, path=k.path), data, epochs=2, batch_size=32)
    for name, tensor in reference.tensors.items():
        assert torch.equal(tensor, mapped.tensors[name]), name
    assert reference.metrics == mapped.metrics


def _benchmark():
    spec = importlib.util.spec_from_file_location("memory_benchmark", ROOT / "benchmarks" / "memory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_benchmark_duplicates_train_only_and_writes_its_section(tmp_path):
    bench = _benchmark()
    src = tmp_path / "SST-2"
    src.mkdir()
    (src / "train.tsv").write_text("sentence\tlabel\na\t1\nb\t0\nc\t1")  # no final newline
    (src / "dev.tsv").write_text("sentence\tlabel\nd\t0\n")
    assert bench.duplicate_task(src, tmp_path / "x3", 3, None) == 9
    assert (tmp_path / "x3" / "train.tsv").read_text() == "sentence\tlabel\n" + "a\t1\nb\t0\nc\t1\n" * 3
    assert (tmp_path / "x3" / "dev.tsv").read_text() == (src / "dev.tsv").read_text()
    assert bench.duplicate_task(src, tmp_path / "x2", 2, 2) == 4
    assert (tmp_path / "x2" / "train.tsv").read_text() == "sentence\tlabel\n" + "a\t1\nb\t0\n" * 2
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other\n\nkeep\n\n<!-- throughput:start -->\nT\n<!-- throughput:end -->\n")
    bench.write_section(doc, "## Memory\n\nfirst")
    bench.write_section(doc, "## Memory\n\nsecond")
    text = doc.read_text()
    assert "keep" in text and "<!-- throughput:start -->\nT\n<!-- throughput:end -->" in text
    assert text.count("## Memory") == 1 and "second" in text and "first" not in text


@pytest.mark.skipif(not Path("/usr/bin/time").is_file() or not Path("/proc").is_dir(), reason="needs GNU time and /proc")
def test_benchmark_measures_a_command(tmp_path):
    bench = _benchmark()
    code = "import numpy as np; a = np.ones(50_000_000 // 8); print(a.sum())"
    m = bench.measure("x", "python -c ...", [sys.executable, "-c", code], 1, tmp_path, tmp_path / "x.log", 0.01)
    assert m.max_rss_mb > 45 and m.wall_seconds > 0 and m.n_examples is None and m.cache_mb == 0


@pytest.mark.skipif(not Path("/usr/bin/time").is_file() or not Path("/proc").is_dir(), reason="needs GNU time and /proc")
def test_benchmark_failure_is_one_line_naming_the_error_and_the_log(tmp_path):
    bench = _benchmark()
    code = "import sys; print('working'); sys.exit('bertnas: error: no teacher here')"
    log = tmp_path / "x.log"
    with pytest.raises(bench.Failed) as err:
        bench.measure("probe x1", "python -c ...", [sys.executable, "-c", code], 1, tmp_path, log, 0.01)
    message = str(err.value)
    assert "\n" not in message and "probe x1 failed (exit 1): bertnas: error: no teacher here" in message
    assert message.endswith(f"log: {log}") and log.is_file()


def test_benchmark_refuses_bad_arguments_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--data-dir", str(tmp_path),
                           "--out", str(tmp_path / "b.md")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"memory.py: error: {tmp_path / 'train.tsv'} not found: pass --data-dir with a "
                                   "GLUE task folder (train.tsv, dev.tsv)")
    assert not (tmp_path / "b.md").exists()
