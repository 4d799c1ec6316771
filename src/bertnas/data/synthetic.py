"""A tiny, seeded synthetic language whose labels depend on word order, not just on which words occur.

Why: tests and smoke runs need a task that is instant to generate, needs no download, and still
separates a model that reads order (a transformer) from a bag-of-words one. Every sentence is a
sequence of clauses ``the SUBJECT VERB [not|never] [INTENSIFIER] ADJECTIVE`` joined by "and"/"but".

* ``single`` (sentiment): a clause's polarity is its adjective's, flipped by a negation in front of it
  (an intensifier may sit between: "not very good" is negative). In "X but Y" the clause after "but"
  decides the label; "X and Y" clauses agree. Half the data comes in *twins* with the same bag of
  words and opposite labels ("A but B" / "B but A"; a negation moved from one clause to the other).
* ``pair`` (paraphrase): label 1 if sentence B states the same (subject, polarity) facts as A,
  e.g. clauses reordered, synonyms swapped, "good" <-> "not bad"; label 0 after one meaning-changing
  edit (negation inserted/removed, adjective replaced by an antonym, subjects swapped between clauses).
  Twins here are (A, clauses reordered) = 1 vs (A, subjects swapped) = 0, again with equal bags of words.

:func:`sentiment_label` and :func:`paraphrase_label` compute labels from the text alone; they define
the language and let tests check every generated label.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Collection

from ..errors import BertnasError
from .examples import Examples, TaskData, TaskSpec

if TYPE_CHECKING:  # transformers is heavy; import it only when a tokenizer is built
    from transformers import BertTokenizer

# Synonym groups. Words in one group are interchangeable; POSITIVE[i] and NEGATIVE[i] are antonym groups.
SUBJECTS: list[list[str]] = [
    ["movie", "film"], ["acting"], ["script", "screenplay"], ["music", "soundtrack"], ["ending"],
    ["cast"], ["plot", "storyline"], ["dialogue"], ["camera"], ["pacing"],
]
POSITIVE: list[list[str]] = [
    ["good", "fine"], ["great", "excellent", "superb"], ["wonderful", "delightful"],
    ["charming", "lovely"], ["enjoyable", "entertaining"],
]
NEGATIVE: list[list[str]] = [
    ["bad", "poor"], ["terrible", "awful", "dreadful"], ["boring", "dull", "tedious"],
    ["weak", "flat"], ["bland", "forgettable"],
]
VERBS = ["was", "seemed", "felt"]
NEGATIONS = ["not", "never"]
INTENSIFIERS = ["very", "really", "quite", "truly", "extremely"]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

_VARIANTS = {"single": "single", "sentiment": "single", "pair": "pair", "paraphrase": "pair"}
_SUBJECT_GROUP = {w: i for i, group in enumerate(SUBJECTS) for w in group}
_ADJ_GROUP = {w: (i, +1) for i, group in enumerate(POSITIVE) for w in group}
_ADJ_GROUP.update({w: (i, -1) for i, group in enumerate(NEGATIVE) for w in group})


@dataclass(frozen=True)
class Clause:
    """One clause; ``polarity`` is the meaning that matters: +1 positive, -1 negative."""

    subject: str
    verb: str
    neg: str | None
    intens: str | None
    adj: str

    @property
    def subject_group(self) -> int:
        return _SUBJECT_GROUP[self.subject]

    @property
    def polarity(self) -> int:
        sign = _ADJ_GROUP[self.adj][1]
        return -sign if self.neg else sign

    def text(self) -> str:
        return " ".join(w for w in ("the", self.subject, self.verb, self.neg, self.intens, self.adj) if w)


# ------------------------------------------------------------------------------------ the semantics


def _parse_clause(words: list[str], sentence: str) -> Clause:
    ok = len(words) in (4, 5, 6) and words[0] == "the" and words[1] in _SUBJECT_GROUP and words[2] in VERBS
    ok = ok and words[-1] in _ADJ_GROUP
    neg = intens = None
    for w in words[3:-1] if ok else []:
        if w in NEGATIONS and neg is None and intens is None:
            neg = w
        elif w in INTENSIFIERS and intens is None:
            intens = w
        else:
            ok = False
    if not ok:
        raise ValueError(f"not a sentence of the synthetic language: {sentence!r}")
    return Clause(words[1], words[2], neg, intens, words[-1])


def parse(sentence: str) -> tuple[list[Clause], list[str]]:
    """Split a synthetic sentence into its clauses and the connectives between them."""
    clauses, connectives, current = [], [], []
    for w in sentence.split():
        if w in ("and", "but"):
            clauses.append(_parse_clause(current, sentence))
            connectives.append(w)
            current = []
        else:
            current.append(w)
    clauses.append(_parse_clause(current, sentence))
    return clauses, connectives


def sentiment_label(sentence: str) -> int:
    """1 (positive) or 0: the polarity of the clause after the last "but", else of the last clause."""
    clauses, _ = parse(sentence)
    return int(clauses[-1].polarity > 0)


def meaning(sentence: str) -> frozenset[tuple[int, int]]:
    """The facts a sentence states: a set of (subject synonym group, polarity)."""
    return frozenset((c.subject_group, c.polarity) for c in parse(sentence)[0])


def paraphrase_label(a: str, b: str) -> int:
    """1 if the two sentences state the same facts (order and wording aside), else 0."""
    return int(meaning(a) == meaning(b))


# ---------------------------------------------------------------------------------- generation


def _clause(rng: random.Random, polarity: int, avoid: Collection[int] = (), neg: bool | None = None,
            intens: bool | None = None) -> Clause:
    group = rng.choice([i for i in range(len(SUBJECTS)) if i not in avoid])
    negated = rng.random() < 0.4 if neg is None else neg
    intensified = rng.random() < 0.4 if intens is None else intens
    adj_sign = -polarity if negated else polarity
    adj = rng.choice(rng.choice(POSITIVE if adj_sign > 0 else NEGATIVE))
    return Clause(
        subject=rng.choice(SUBJECTS[group]),
        verb=rng.choice(VERBS),
        neg=rng.choice(NEGATIONS) if negated else None,
        intens=rng.choice(INTENSIFIERS) if intensified else None,
        adj=adj,
    )


def _join(clauses: list[Clause], connective: str) -> str:
    return f" {connective} ".join(c.text() for c in clauses)


def _single_one(rng: random.Random, label: int) -> str:
    """One sentiment sentence with the given label, in one of three forms."""
    p = 1 if label else -1
    form = rng.random()
    first = _clause(rng, p if form < 0.6 else -p)
    if form < 0.3:
        return first.text()
    second = _clause(rng, p, avoid={first.subject_group})
    return _join([first, second], "and" if form < 0.6 else "but")


def _single_twins(rng: random.Random) -> list[tuple[str, int]]:
    """Two sentences with the same words and opposite labels: only word order tells them apart."""
    if rng.random() < 0.6:  # contrast: "X but Y" vs "Y but X"
        x = _clause(rng, +1)
        y = _clause(rng, -1, avoid={x.subject_group})
        return [(_join([x, y], "but"), 0), (_join([y, x], "but"), 1)]
    # agreement: move the one negation to the other clause, flipping both clauses
    p = rng.choice([1, -1])
    x = _clause(rng, p, neg=True)
    y = _clause(rng, p, avoid={x.subject_group}, neg=False)
    x2 = replace(x, neg=None)  # polarity flips to -p
    y2 = replace(y, neg=x.neg)  # polarity flips to -p
    order = [x, y] if rng.random() < 0.5 else [y, x]
    moved = [x2, y2] if order[0] is x else [y2, x2]
    return [(_join(order, "and"), int(p > 0)), (_join(moved, "and"), int(p < 0))]


def _rewrite(rng: random.Random, clauses: list[Clause]) -> list[Clause]:
    """One meaning-preserving rewrite (there is always at least one applicable)."""
    out = list(clauses)
    options = ["verb", "double_negation", "subject_synonym", "adj_synonym", "negation_word", "intensifier"]
    if len(out) > 1:
        options += ["reorder", "reorder"]
    while True:
        kind = rng.choice(options)
        i = rng.randrange(len(out))
        c = out[i]
        if kind == "reorder":
            return out[::-1]
        if kind == "verb":
            out[i] = replace(c, verb=rng.choice([v for v in VERBS if v != c.verb]))
            return out
        if kind == "double_negation" and c.intens is None:  # "good" <-> "not bad"
            group, sign = _ADJ_GROUP[c.adj]
            antonyms = (NEGATIVE if sign > 0 else POSITIVE)[group]
            out[i] = replace(c, neg=None if c.neg else rng.choice(NEGATIONS), adj=rng.choice(antonyms))
            return out
        if kind == "subject_synonym" and len(SUBJECTS[c.subject_group]) > 1:
            out[i] = replace(c, subject=rng.choice([w for w in SUBJECTS[c.subject_group] if w != c.subject]))
            return out
        if kind == "adj_synonym":
            group, sign = _ADJ_GROUP[c.adj]
            out[i] = replace(c, adj=rng.choice([w for w in (POSITIVE if sign > 0 else NEGATIVE)[group] if w != c.adj]))
            return out
        if kind == "negation_word" and c.neg:
            out[i] = replace(c, neg=[w for w in NEGATIONS if w != c.neg][0])
            return out
        if kind == "intensifier" and c.intens:
            out[i] = replace(c, intens=rng.choice([w for w in INTENSIFIERS if w != c.intens]))
            return out


def _change(rng: random.Random, clauses: list[Clause]) -> list[Clause]:
    """One meaning-changing edit."""
    out = list(clauses)
    i = rng.randrange(len(out))
    c = out[i]
    options = ["negation", "antonym", "subject"]
    if len(out) == 2 and out[0].polarity != out[1].polarity:
        options += ["swap_subjects", "swap_subjects"]
    kind = rng.choice(options)
    if kind == "negation":  # insert or remove a negation, nothing else
        out[i] = replace(c, neg=None if c.neg else rng.choice(NEGATIONS))
    elif kind == "antonym":
        group, sign = _ADJ_GROUP[c.adj]
        out[i] = replace(c, adj=rng.choice((NEGATIVE if sign > 0 else POSITIVE)[group]))
    elif kind == "subject":  # talk about something else
        used = {x.subject_group for x in out}
        group = rng.choice([g for g in range(len(SUBJECTS)) if g not in used])
        out[i] = replace(c, subject=rng.choice(SUBJECTS[group]))
    else:  # swap who is praised and who is criticised
        a, b = out
        out = [replace(a, subject=b.subject), replace(b, subject=a.subject)]
    return out


def _pair_base(rng: random.Random, n_clauses: int | None = None, mixed: bool = False) -> list[Clause]:
    n = n_clauses or rng.choice([1, 2])
    first = _clause(rng, rng.choice([1, -1]))
    if n == 1:
        return [first]
    polarity = -first.polarity if mixed else rng.choice([1, -1])
    return [first, _clause(rng, polarity, avoid={first.subject_group})]


def _pair_one(rng: random.Random, label: int) -> tuple[str, str, int]:
    a = _pair_base(rng)
    while True:
        b = a
        for _ in range(rng.randint(1, 3)):
            b = _rewrite(rng, b)
        if not label:
            b = _change(rng, b)
        if b != a:
            return _join(a, "and"), _join(b, "and"), label


def _pair_twins(rng: random.Random) -> list[tuple[str, str, int]]:
    """(A, clauses reordered) = 1 and (A, subjects swapped) = 0: the same words on each side."""
    a = _pair_base(rng, n_clauses=2, mixed=True)
    x, y = a
    reordered = [y, x]
    swapped = [replace(x, subject=y.subject), replace(y, subject=x.subject)]
    return [(_join(a, "and"), _join(reordered, "and"), 1), (_join(a, "and"), _join(swapped, "and"), 0)]


def _make_split(variant: str, n: int, rng: random.Random, exclude: set) -> Examples:
    """``n`` examples in units of one label-0 and one label-1 example, so labels are balanced exactly."""
    rows: list[tuple] = []  # (text, label) or (text, text_pair, label)
    seen = set(exclude)
    while len(rows) < n:
        if variant == "single":
            unit = _single_twins(rng) if rng.random() < 0.5 else [(_single_one(rng, y), y) for y in (0, 1)]
        else:
            unit = _pair_twins(rng) if rng.random() < 0.3 else [_pair_one(rng, 0), _pair_one(rng, 1)]
        if n - len(rows) == 1:  # odd size: one example of a random label
            unit = [rng.choice(unit)]
        keys = [row[:-1] for row in unit]
        if any(k in seen for k in keys) or len(set(keys)) != len(keys):
            continue  # no duplicates within a split and no dev example in train
        seen.update(keys)
        rows.extend(unit)
    rng.shuffle(rows)
    return Examples(
        texts=[r[0] for r in rows],
        labels=[r[-1] for r in rows],
        text_pairs=[r[1] for r in rows] if variant == "pair" else None,
        source=f"synthetic-{variant}",
        meta={"synthetic": variant},
    )


def _variant(variant: str) -> str:
    key = variant.strip().lower()
    if key not in _VARIANTS:
        raise BertnasError(f"unknown synthetic variant {variant!r}: use 'single' (sentiment) or 'pair' (paraphrase)")
    return _VARIANTS[key]


def generate(variant: str = "single", n_train: int = 2000, n_dev: int = 500, seed: int = 0) -> TaskData:
    """Generate a balanced synthetic task; the same arguments always give the same data.

    The dev split depends only on (variant, n_dev, seed), so changing ``n_train`` keeps dev comparable;
    train never contains a dev example.
    """
    kind = _variant(variant)
    for name, n in (("n_train", n_train), ("n_dev", n_dev)):
        if not isinstance(n, int) or n < 1:
            raise BertnasError(f"synthetic {name} must be a positive integer, got {n!r}")
    dev = _make_split(kind, n_dev, random.Random(f"bertnas-synthetic/{kind}/{seed}/dev"), set())
    dev_keys = set(zip(dev.texts, dev.text_pairs)) if dev.text_pairs else {(t,) for t in dev.texts}
    train = _make_split(kind, n_train, random.Random(f"bertnas-synthetic/{kind}/{seed}/train"), dev_keys)
    spec = TaskSpec(name=f"synthetic-{kind}", labels=["0", "1"], pair=kind == "pair",
                    metrics=["accuracy"], headline="accuracy")
    return TaskData(spec=spec, train=train, dev=dev)


# ------------------------------------------------------------------------------------ files, vocab


def write_task(data: TaskData, out_dir: str | Path) -> Path:
    """Write train.tsv/dev.tsv (and extra dev splits) that :func:`~.readers.read_custom` reads back.

    Header: ``sentence, label`` or ``sentence1, sentence2, label``; labels are written by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": data.train, "dev": data.dev, **data.extra_dev}
    for name, split in splits.items():
        header = ["sentence1", "sentence2", "label"] if split.text_pairs is not None else ["sentence", "label"]
        lines = ["\t".join(header)]
        for i, text in enumerate(split.texts):
            label = split.labels[i]
            fields = [text] + ([split.text_pairs[i]] if split.text_pairs is not None else [])
            fields.append(repr(float(label)) if data.spec.labels is None else data.spec.labels[int(label)])
            if any(ch in field for field in fields for ch in "\t\r\n"):
                raise BertnasError(f"{name} example {i} contains a tab or line break: cannot write it as TSV")
            lines.append("\t".join(fields))
        (out / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def vocabulary(variant: str = "single") -> list[str]:
    """Every word the generator can emit for a variant, sorted."""
    kind = _variant(variant)
    words = {"the", *VERBS, *NEGATIONS, *INTENSIFIERS, "and"}
    words.update(w for group in SUBJECTS + POSITIVE + NEGATIVE for w in group)
    if kind == "single":
        words.add("but")
    return sorted(words)


def write_vocab(path: str | Path) -> list[str]:
    """Write a BERT vocab.txt: the five special tokens (ids 0-4), then the words of both variants."""
    tokens = SPECIAL_TOKENS + sorted(set(vocabulary("single")) | set(vocabulary("pair")))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return tokens


def build_tokenizer(directory: str | Path) -> "BertTokenizer":
    """A word-level BertTokenizer for the synthetic language (vocab.txt is written into ``directory``).

    transformers v5 takes the vocabulary file as ``vocab=``; ``vocab_file=`` is silently ignored there
    and leaves a tokenizer with only the special tokens.
    """
    from transformers import BertTokenizer

    path = Path(directory) / "vocab.txt"
    write_vocab(path)
    return BertTokenizer(vocab=str(path))


# ------------------------------------------------------------------- tasks for the search's own tests


def _content_words() -> list[str]:
    return sorted({w for group in SUBJECTS + POSITIVE + NEGATIVE for w in group})


def generate_distance(n_train: int = 512, n_dev: int = 256, seed: int = 0, length: int = 32, near: int = 4,
                      far: int = 14, fillers: Collection[str] | None = None) -> TaskData:
    """A single-sentence task that needs several cells: is "never" within ``near`` tokens of "excellent"?

    Every sentence holds ``length`` filler words with exactly one "never" and one "excellent"; label 1 when
    they are at most ``near`` apart, 0 when at least ``far`` apart. Both labels have the same bag of words and
    random absolute positions, so only a receptive field spanning the two words decides. One cell of the widest
    ops reaches further than ``near``, but the typical sampled cell does not: stacking cells is the cheap way.
    """
    if not (0 < near < far < length):
        raise BertnasError(f"need 0 < near < far < length, got near={near}, far={far}, length={length}")
    fillers = sorted(fillers or {"the", *VERBS, *INTENSIFIERS, "and"})

    def split(n: int, rng: random.Random) -> Examples:
        texts, labels = [], []
        for i in range(n):
            label = i % 2
            gap = rng.randint(1, near) if label else rng.randint(far, length - 1)
            first = rng.randint(0, length - 1 - gap)
            words = [rng.choice(fillers) for _ in range(length)]
            a, b = (first, first + gap) if rng.random() < 0.5 else (first + gap, first)
            words[a], words[b] = "never", "excellent"
            texts.append(" ".join(words))
            labels.append(label)
        return Examples(texts=texts, labels=labels, source="synthetic-distance", meta={"synthetic": "distance"})

    spec = TaskSpec(name="synthetic-distance", labels=["0", "1"], pair=False, metrics=["accuracy"],
                    headline="accuracy")
    return TaskData(spec=spec, train=split(n_train, random.Random(f"distance/{seed}/train")),
                    dev=split(n_dev, random.Random(f"distance/{seed}/dev")))


def generate_keyword(n_train: int = 1000, n_dev: int = 300, seed: int = 0, min_words: int = 2,
                     max_words: int = 4, n_words: int = 16) -> TaskData:
    """A pair task decided only by the relation of A and B: does B repeat a word of A? (label 1)

    A and B are random content words; a positive B contains exactly one word of A, a negative B none. Each
    sentence alone is uninformative (A and B come from the same distribution for both labels), so a model
    that does not compare the two sentences stays at chance. Words come from the first ``n_words`` content words.
    """
    words = _content_words()[:n_words]
    if not 2 * max_words <= len(words):
        raise BertnasError(f"need n_words >= 2 * max_words, got n_words={n_words}, max_words={max_words}")

    def split(n: int, rng: random.Random) -> Examples:
        texts, pairs, labels = [], [], []
        for i in range(n):
            label = i % 2
            a = rng.sample(words, rng.randint(min_words, max_words))
            rest = [w for w in words if w not in a]
            b = rng.sample(rest, rng.randint(min_words, max_words))
            if label:
                b[rng.randrange(len(b))] = rng.choice(a)
            texts.append(" ".join(a))
            pairs.append(" ".join(b))
            labels.append(label)
        return Examples(texts=texts, labels=labels, text_pairs=pairs, source="synthetic-keyword",
                        meta={"synthetic": "keyword"})

    spec = TaskSpec(name="synthetic-keyword", labels=["0", "1"], pair=True, metrics=["accuracy"], headline="accuracy")
    return TaskData(spec=spec, train=split(n_train, random.Random(f"keyword/{seed}/train")),
                    dev=split(n_dev, random.Random(f"keyword/{seed}/dev")))
