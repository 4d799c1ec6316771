"""The corpus read in two passes (data/corpus.Corpus) gives exactly the items the simple in-memory reading gives:
de-duplicated across sources in order of first occurrence, then the same seeded subset in the same order."""
import random
import tracemalloc

import numpy as np
import pytest

from bertnas.data.corpus import Corpus, chunks, iter_source, read_corpus
from bertnas.errors import BertnasError


def in_memory(spec: str, max_sentences=None, seed=0, min_chars=1, pairs=True) -> list[str]:
    """The reference: every line in a list and a set, then random.sample over the list."""
    seen, texts = set(), []
    for source in (s.strip() for s in spec.split(",") if s.strip()):
        for line in iter_source(source, pairs):
            if len(line) >= min_chars and line not in seen:
                seen.add(line)
                texts.append(line)
    if max_sentences is not None and len(texts) > max_sentences:
        texts = random.Random(seed).sample(texts, max_sentences)
    return texts


@pytest.fixture
def corpus_spec(tmp_path, synthetic_files):
    rng = random.Random(3)
    words = ["alpha", "beta", "gamma", "delta", "é", "naïve", "日本", "x"]
    lines = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(400)]  # many repeats
    (tmp_path / "a.txt").write_text("\n".join(lines[:250]) + "\n\n")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "b.txt").write_text("\n".join(lines[200:]) + "\n")  # overlaps a.txt
    return f"{tmp_path / 'a.txt'},{synthetic_files['pair']},{tmp_path / 'more'},{synthetic_files['single']}"


@pytest.mark.parametrize("max_sentences", [None, 5, 300, 10_000])
@pytest.mark.parametrize("seed", [0, 7])
def test_two_pass_corpus_equals_in_memory_reading(corpus_spec, max_sentences, seed):
    want = in_memory(corpus_spec, max_sentences, seed)
    corpus = Corpus(corpus_spec, max_sentences, seed)
    assert len(corpus) == len(want) and list(corpus) == want
    assert [t for chunk in corpus.chunks(7) for t in chunk] == want
    assert [t for chunk in chunks(corpus, 13) for t in chunk] == want
    assert read_corpus(corpus_spec, max_sentences, seed) == want
    if max_sentences == 300:  # a real subset, in the sample's order (not the file's)
        assert len(want) == 300 and list(corpus) != sorted(corpus, key=in_memory(corpus_spec).index)


def test_two_pass_corpus_options(corpus_spec, synthetic_files):
    assert list(Corpus(corpus_spec, min_chars=12)) == in_memory(corpus_spec, min_chars=12)
    split = Corpus(str(synthetic_files["pair"]), pairs=False)
    assert list(split) == in_memory(str(synthetic_files["pair"]), pairs=False)
    assert len(split) > len(Corpus(str(synthetic_files["pair"])))


def test_two_pass_corpus_errors(tmp_path):
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(BertnasError, match="empty"):
        Corpus(str(tmp_path / "blank.txt"))
    with pytest.raises(BertnasError, match="no corpus given"):
        Corpus(" ")
    with pytest.raises(BertnasError, match="not found"):
        Corpus(f"{tmp_path / 'blank.txt'},{tmp_path / 'nope.txt'}")
    (tmp_path / "model.bin").write_bytes(b"\x00\x01binary" * 100)
    with pytest.raises(BertnasError, match="not text"):
        Corpus(str(tmp_path / "model.bin"))


def test_two_pass_corpus_does_not_hold_the_texts(tmp_path):
    """Python memory while reading 60,000 distinct 80-character lines stays far below the list of them."""
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz ", dtype=np.uint8)
    rows = letters[rng.integers(0, len(letters), size=(60_000, 80))]
    path = tmp_path / "big.txt"
    path.write_bytes(b"\n".join(b"q" + r.tobytes() + b"q" for r in rows) + b"\n")
    tracemalloc.start()
    corpus = Corpus(str(path), max_sentences=50_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    texts = read_corpus(str(path), max_sentences=50_000)
    as_list = sum(len(t) + 49 for t in texts) + 8 * len(texts)  # str objects + the list's pointers
    assert len(corpus) == 50_000 and corpus[123] == texts[123] and corpus[-1] == texts[-1]
    assert peak < as_list / 2, (peak, as_list)


@pytest.mark.parametrize("n,k", [(0, 0), (5, 5), (10, 3), (100, 90), (1000, 20), (5000, 4000), (70_000, 12_256)])
def test_sample_indices_draws_what_random_sample_draws(n, k):
    from bertnas.data.corpus import sample_indices

    for seed in (0, 1):
        assert sample_indices(random.Random(seed), n, k).tolist() == random.Random(seed).sample(range(n), k)


@pytest.mark.parametrize("n", [0, 1, 2, 17, 5000])
def test_shuffled_indices_is_random_shuffle(n):
    from bertnas.data.corpus import shuffled_indices

    for seed in (0, 3):
        want = list(range(n))
        random.Random(seed).shuffle(want)
        assert shuffled_indices(random.Random(seed), n).tolist() == want


def test_split_and_batches_as_with_lists(synthetic_files, tmp_path):
    """The train / held-out split and the length-grouped batches, now numpy arrays, are the ones the lists gave."""
    import torch

    from bertnas.nasbert.distill import compute_block_states
    from bertnas.teacher.loading import load_encoder
    from bertnas.nasbert.pipeline import _split

    order = list(range(101))
    random.Random(5).shuffle(order)
    train, held = _split(101, 30, 5)
    assert train.tolist() == sorted(order[20:]) and held.tolist() == sorted(order[:20])
    from conftest import make_teacher

    teacher, tok = load_encoder(str(make_teacher(tmp_path / "teacher")))
    texts = read_corpus(str(synthetic_files["single"]))[:60]
    states = compute_block_states(teacher, tok, texts, [0, 1, 2], 32, tmp_path / "states")
    idx = list(range(3, 60, 2))
    by_length = sorted(idx, key=states.length)  # what batches did with lists
    want = [by_length[i : i + 8] for i in range(0, len(by_length), 8)]
    want = [want[j] for j in torch.randperm(len(want), generator=torch.Generator().manual_seed(1)).tolist()]
    got = list(states.batches(idx, 8, torch.Generator().manual_seed(1)))
    assert len(got) == len(want)
    for batch, chunk in zip(got, want):
        assert torch.equal(batch["input_ids"], states.collate(chunk)["input_ids"])
        assert torch.equal(batch["states"], states.collate(chunk)["states"])


def test_a_corpus_file_changed_between_the_passes_is_refused(tmp_path, monkeypatch):
    """A file written to while it is read (its second reading differs from the first) is a one-line error, even
    when the number of distinct lines stays the same."""
    import bertnas.data.corpus as corpus_mod

    path = tmp_path / "c.txt"
    path.write_text("one\ntwo\nthree\n")
    reads = []
    real = corpus_mod.iter_source

    def read_then_edit(source, pairs=True):
        reads.append(source)
        if len(reads) == 2:  # the second pass starts: someone rewrote one line of the file in place
            path.write_text("one\nTWO\nthree\n")
        return real(source, pairs)

    monkeypatch.setattr(corpus_mod, "iter_source", read_then_edit)
    with pytest.raises(BertnasError, match="changed while it was read"):
        Corpus(str(path))
