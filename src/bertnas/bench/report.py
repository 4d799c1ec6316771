"""bench.json's content and the tables of bench.md, with the comparisons the issue asks to state.

Every trained row ran ``--seeds`` seeds: its metric is the mean over them, with the sample standard deviation
and the standard error (sd / sqrt(n)); each seed's values stay in the row's ``seeds``. A comparison pairs two
rows by seed index (:func:`stats.paired_verdict`). Like for like: rows built fresh (random, hand-designed and
other-task genotypes, small BERT, the truncated teacher) are compared with ``searched_fresh``, the searched
genotype built and trained the same way; search rows (the ablations) with ``full``, which keeps its supernet's
weights as they keep theirs.
"""
from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from ..config import RunConfig
from ..data.examples import TaskSpec
from ..measure.profile import hardware_info
from .bins import CostBins
from .settings import BenchSettings, budget_suffix
from ..stats import paired_verdict, spread


def _second_metric(spec: TaskSpec) -> str | None:
    others = [m for m in spec.metrics if m != spec.headline]
    return others[0] if others else None


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


# ----------------------------------------------------------------------------- rows
def _seed_entry(rec: dict, m: dict, h: str, second: str | None) -> dict:
    """One seed of a row: its metrics, architecture, size and speed."""
    return {"seed": rec.get("seed"), "metric": rec["dev"][h],
            "second_metric": rec["dev"].get(second) if second else None, "dev": rec["dev"], "architecture": rec.get("architecture", ""), "params": m["params"], "flops": m["flops"],
            "latency_b1_ms": m["latency_b1"]["median_ms"], "latency_b32_ms": m["latency_b32"]["median_ms"],
            "search_seconds": rec.get("search_seconds"), "train_seconds": rec.get("train_seconds"),
            **{k: rec[k] for k in ("cost", "bin") if k in rec}}


def _row_entry(recs: list[dict], meas: list[dict], h: str, second: str | None) -> dict:
    """A row over its seeds: mean, sd and se of the metrics; size and speed of seed index 0's model."""
    seeds = [_seed_entry(r, m, h, second) for r, m in zip(recs, meas)]
    first, m0 = recs[0], meas[0]
    metric = spread([s["metric"] for s in seeds])
    sec = spread([s["second_metric"] for s in seeds]) if second and seeds[0]["second_metric"] is not None else None
    archs = list(dict.fromkeys(s["architecture"] for s in seeds))
    numeric = [k for k, v in first["dev"].items() if isinstance(v, (int, float))]
    entry = {
        "name": first["name"], "group": first["group"], "label": first["label"], "kind": first.get("kind"),
        "n_seeds": metric["n"], "metric": metric["mean"], "metric_sd": metric["sd"], "metric_se": metric["se"],
        "second_metric": sec["mean"] if sec else None, "second_metric_se": sec["se"] if sec else None,
        "dev": {k: statistics.fmean(r["dev"][k] for r in recs) for k in numeric},
        "params": m0["params"], "params_no_emb": m0["params_no_emb"], "flops": m0["flops"],
        "latency_b1": m0["latency_b1"], "latency_b32": m0["latency_b32"],
        "search_seconds": _mean(s["search_seconds"] for s in seeds),
        "train_seconds": _mean(s["train_seconds"] for s in seeds),
        "architecture": archs[0],
        **{k: first[k] for k in ("retrain_epochs", "search_epochs", "retrain_lr", "cost", "bin") if k in first},
        "seeds": seeds,
    }
    if len(archs) > 1:
        entry["architectures"] = archs  # a search row may find another genotype with another seed
    return entry


# ----------------------------------------------------------------------------- random genotypes
def _by_seed(rows: list[dict]) -> list[float]:
    """Per seed index, the mean metric of ``rows`` (over the seed indices all of them ran)."""
    n = min(r["n_seeds"] for r in rows)
    return [statistics.fmean(r["seeds"][i]["metric"] for r in rows) for i in range(n)]


def _random_summary(randoms: list[dict]) -> dict:
    """Average (each genotype's value a mean over seeds), its per-seed values, median and best genotype."""
    best = max(randoms, key=lambda r: r["metric"])
    return {"n": len(randoms), "average": statistics.fmean(r["metric"] for r in randoms),
            "average_by_seed": _by_seed(randoms), "median": statistics.median(r["metric"] for r in randoms),
            "best": best["metric"], "best_row": best["name"]}


def _versus(a: dict, b_values: list[float], b_mean: float) -> dict:
    """Row ``a`` against per-seed values ``b_values`` (mean ``b_mean``): the paired verdict and the relative
    improvement (a - b) / b."""
    return {"row": a["name"], "metric": a["metric"], "against_metric": b_mean,
            "relative": (a["metric"] - b_mean) / b_mean if b_mean else None,
            **paired_verdict([s["metric"] for s in a["seeds"]], b_values)}


def _bin_summaries(bins: CostBins, randoms: list[dict], ref: dict | None) -> list[dict]:
    """Per cost bin: its random genotypes, their average and best, the seeds whose searched genotype lands in
    it, and the reference row against the bin's average."""
    out = []
    for b in range(1, bins.count + 1):
        low, high = bins.bounds(b)
        members = [r for r in randoms if r.get("bin") == b]
        here = [s["seed"] for s in ref["seeds"] if s.get("bin") == b] if ref else []
        entry: dict[str, Any] = {"bin": b, "low": low, "high": high, "rows": [r["name"] for r in members],
                                 "searched_seeds": here}
        if members:
            entry.update(_random_summary(members))
            if ref is not None:
                entry["versus"] = _versus(ref, entry["average_by_seed"], entry["average"])
        out.append(entry)
    return out


def searched_bin(ref: dict) -> int | None:
    """The cost bin most of the reference row's seeds land in (the cheapest of a tie)."""
    counts = Counter(s["bin"] for s in ref["seeds"] if s.get("bin") is not None)
    return min(counts, key=lambda b: (-counts[b], b)) if counts else None


def _budget_summaries(budgets: tuple[float, ...], bins: CostBins, randoms: list[dict], by: dict[str, dict]
                      ) -> list[dict]:
    """Per latency budget: its student's predicted cost per seed, whether every seed met the budget, the cost bin
    it lands in, and (trained fresh, like for like) against that bin's random average and best random genotype."""
    out = []
    for budget in budgets:
        full, fresh = by.get(f"full{budget_suffix(budget)}"), by.get(f"searched_fresh{budget_suffix(budget)}")
        ref = fresh or full
        if ref is None:
            continue
        costs = [s.get("cost") for s in ref["seeds"]]
        entry: dict[str, Any] = {"budget_ms": budget, "full": full["name"] if full else None, "reference": ref["name"],
                                 "predicted_ms": costs, "met": all(c is not None and c <= budget for c in costs),
                                 "bin": searched_bin(ref)}
        members = [r for r in randoms if r.get("bin") == entry["bin"]]
        if members:
            summary = _random_summary(members)
            best = by[summary["best_row"]]
            entry.update(random=summary, versus_average=_versus(ref, summary["average_by_seed"], summary["average"]),
                         versus_best=_versus(ref, [x["metric"] for x in best["seeds"]], best["metric"]))
        out.append(entry)
    return out


def _reference(by: dict[str, dict]) -> dict | None:
    """The row genotype rows are compared with: ``searched_fresh`` (like for like), else ``full``."""
    return by.get("searched_fresh") or by.get("full")


# ----------------------------------------------------------------------------- bench.json
def assemble(spec: TaskSpec, records: list[list[dict]], measured: dict[str, list[dict]], cfg: RunConfig,
             settings: BenchSettings, probe_seconds: float, bins: CostBins | None = None) -> dict[str, Any]:
    """One entry per row (records per row and seed index, in row order; measurements by row name), the
    random-search summary, the per-bin summary, the comparisons and the findings."""
    h, second = spec.headline, _second_metric(spec)
    rows = [_row_entry(recs, measured[recs[0]["name"]], h, second) for recs in records]
    results: dict[str, Any] = {
        "task": spec.name, "metric": h, "second_metric": second, "seeds": settings.seeds, "rows": rows,
        "teacher_probe_seconds": probe_seconds,
        "measurement": {"seq_len": cfg.eval_seq_len, "threads": cfg.latency_threads, "repeats": cfg.latency_repeats,
                        "statistic": "median, interquartile range", "interleaved": True, "device": "cpu"},
        "settings": {"run": cfg.to_dict(), "bench": settings.to_dict()},
        "hardware": hardware_info(),
    }
    if "bert_base" in measured:
        b = measured["bert_base"][0]
        results["bert_base"] = {k: b[k] for k in ("params", "params_no_emb", "flops", "latency_b1", "latency_b32")}
    randoms = [r for r in rows if r["group"] == "random"]
    ref = _reference({r["name"]: r for r in rows})
    if randoms:
        results["random"] = _random_summary(randoms)
    if randoms and bins is not None:
        results["bins"] = {**bins.to_dict(), "reference": ref["name"] if ref else None,
                           "searched_bin": searched_bin(ref) if ref else None,
                           "bins": _bin_summaries(bins, randoms, ref)}
    if settings.budgets_ms and bins is not None:
        results["budgets"] = _budget_summaries(settings.budgets_ms, bins, randoms, {r["name"]: r for r in rows})
    results["comparisons"] = comparisons(results)
    results["findings"] = findings(results)
    return results


def comparisons(r: dict) -> list[dict]:
    """The comparisons the bench exists for, each paired over seeds: full against its genotype trained fresh;
    the fresh searched genotype against random search (average, best, its cost bin's average) and the
    hand-designed rows; full against the ablations that keep their search's weights."""
    by = {row["name"]: row for row in r["rows"]}
    ref, full, out = _reference(by), by.get("full"), []

    def add(a: dict, what: str, against: str, b_values: list[float], b_mean: float) -> None:
        out.append({**_versus(a, b_values, b_mean), "against": against, "what": what})

    def seeds(row: dict) -> list[float]:
        return [s["metric"] for s in row["seeds"]]

    if full is not None and "searched_fresh" in by:
        add(full, "its genotype trained fresh (searched_fresh)", "searched_fresh", seeds(by["searched_fresh"]),
            by["searched_fresh"]["metric"])
    if ref is not None and "random" in r:
        s = r["random"]
        add(ref, f"the random-search average of {s['n']}", "random_average", s["average_by_seed"], s["average"])
        add(ref, f"the best random genotype ({s['best_row']})", s["best_row"], seeds(by[s["best_row"]]), s["best"])
    if ref is not None and r.get("bins", {}).get("searched_bin"):
        b = next(x for x in r["bins"]["bins"] if x["bin"] == r["bins"]["searched_bin"])
        if "average" in b:
            add(ref, f"the random average of its cost bin {b['bin']} ({b['n']} genotypes)", f"bin_{b['bin']}_average",
                b["average_by_seed"], b["average"])
    for b in r.get("budgets", []):
        ref = by[b["reference"]]
        if b["full"] and b["full"] != b["reference"]:
            add(by[b["full"]], f"its genotype trained fresh ({b['reference']})", b["reference"], seeds(ref), ref["metric"])
        if "random" in b:
            s = b["random"]
            add(ref, f"the random average of its cost bin {b['bin']} ({s['n']} genotypes)", f"bin_{b['bin']}_average",
                s["average_by_seed"], s["average"])
            add(ref, f"the best random genotype of its cost bin ({s['best_row']})", s["best_row"],
                seeds(by[s["best_row"]]), s["best"])
    for row in r["rows"]:
        if row["group"] in ("hand-designed", "ablation"):
            a = full if row["kind"] == "search" else ref
            if a is not None:
                add(a, f"{row['label']} [{row['params'] / 1e6:.2f}M params]", row["name"], seeds(row), row["metric"])
    return out


def findings(r: dict) -> list[str]:
    """The comparisons as plain sentences: means, the verdict, the paired difference and its standard error."""
    if not r["comparisons"]:
        return ["no AdaBERT row (full or searched_fresh) in this bench: nothing to compare against"]
    m, out = r["metric"], []
    for c in r["comparisons"]:
        se = f" (se, {c['n']} seeds)" if c["se_diff"] is not None else ""
        rel = f", relative {c['relative']:+.2%}" if c["relative"] is not None else ""
        out.append(f"{c['row']} ({c['metric']:.4f}) vs {c['what']} ({c['against_metric']:.4f}): {c['verdict']}; "
                   f"paired difference {_value(c['mean_diff'], c['se_diff'], signed=True)} {m}{se}{rel}")
    return out


def _ms(stats: dict) -> str:
    fmt = (lambda x: f"{x:.2f}") if stats["median_ms"] < 100 else (lambda x: f"{x:.0f}")
    return f"{fmt(stats['median_ms'])} ({fmt(stats['p25_ms'])}-{fmt(stats['p75_ms'])})"


def _code(text: str) -> str:
    """A code span that survives a Markdown table: genotype strings contain '|'."""
    return f"`{text}`".replace("|", "\\|") if text else ""


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _value(mean: float | None, se: float | None, signed: bool = False) -> str:
    """"mean ± se" over seeds (the mean alone with one seed)."""
    if mean is None:
        return "-"
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if se is None else f"{text} ± {se:.4f}"


def _group(row: dict) -> str:
    return f"{row['group']} (bin {row['bin']})" if row["group"] == "random" and row.get("bin") else row["group"]


def _architecture(row: dict) -> str:
    more = len(row.get("architectures", [])) - 1
    return _code(row.get("architecture", "")) + (f" (+{more} other over seeds)" if more > 0 else "")


def bench_table(r: dict) -> str:
    """The Markdown table of every row, then the random-search summary, the per-bin table and the findings."""
    m, second = r["metric"], r["second_metric"]
    meas = r["measurement"]
    many = any(row["n_seeds"] > 1 for row in r["rows"])
    over = " (mean ± se)" if many else ""
    head = ["row", "group", f"dev {m}{over}"] + ([f"dev {second}{over}"] if second else []) + (
        [f"{m} per seed"] if many else []) + [
        "params", "params w/o emb.", "GFLOPs (b1)", "latency b1 ms", "latency b32 ms", "search s", "train s",
        "architecture"]
    seeds = f"; trained rows: mean ± standard error over {r['seeds']} seeds" if many else ""
    lines = [f"Task {r['task']}: dev {m}{seeds}; latency at sequence {meas['seq_len']}, {meas['threads']} threads, "
             f"median (interquartile range) of {meas['repeats']} interleaved repeats, all models in one process.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 3) + "---|"]

    def add(name: str, group: str, row: dict) -> None:
        cells = [name, group, _value(row.get("metric"), row.get("metric_se"))]
        if second:
            cells.append(_value(row.get("second_metric"), row.get("second_metric_se")))
        if many:
            cells.append(" / ".join(f"{s['metric']:.4f}" for s in row.get("seeds", [])) or "-")
        cells += [f"{row['params'] / 1e6:.2f}M", f"{row['params_no_emb'] / 1e6:.3f}M", f"{row['flops'] / 1e9:.3f}",
                  _ms(row["latency_b1"]), _ms(row["latency_b32"]), _s(row.get("search_seconds")),
                  _s(row.get("train_seconds")), _architecture(row)]
        lines.append("| " + " | ".join(cells) + " |")

    for row in r["rows"]:
        add(row["name"], _group(row), row)
    if "bert_base" in r:
        add("bert_base", "reference", {**r["bert_base"], "architecture": "BERT-base size, random weights"})
    lines.append("")
    if "random" in r:
        s = r["random"]
        lines.append(f"Random search ({s['n']} genotypes): average {m} {s['average']:.4f}, median {s['median']:.4f}, "
                     f"best {s['best']:.4f} ({s['best_row']}).")
    if "bins" in r:
        lines += ["", *bins_table(r), ""]
    if r.get("budgets"):
        lines += [*budgets_table(r), ""]
    lines.append(f"Teacher knowledge + probes (shared by every row, run once): {r['teacher_probe_seconds']:.0f} s.")
    lines += [f"- {f}" for f in r["findings"]]
    return "\n".join(lines)


def _range(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return "all"
    return f"< {high:.4g}" if low is None else f">= {low:.4g}" if high is None else f"{low:.4g} - {high:.4g}"


def bins_table(r: dict) -> list[str]:
    """Per cost bin: the random genotypes' average and best, where the searched student lands, and the
    reference row against the bin's average (relative improvement, paired difference over seeds, verdict)."""
    b, m = r["bins"], r["metric"]
    ref = b["reference"] or "searched"
    lines = [f"Random genotypes by cost bin ({b['basis']}, {b['unit']}; {b['method']}). Relative = ({ref} - bin "
             f"average) / bin average, Yang et al. (ICLR 2020); the paired difference is over seeds.", "",
             f"| bin | cost ({b['unit']}) | random genotypes | average {m} | best random | {ref} here (seeds) "
             f"| relative | paired difference ± se | verdict |", "|---|---|---|---:|---|---|---:|---:|---|"]
    for x in b["bins"]:
        here = ", ".join(str(s) for s in x["searched_seeds"]) or "-"
        if "average" not in x:
            lines.append(f"| {x['bin']} | {_range(x['low'], x['high'])} | none | - | - | {here} | - | - | - |")
            continue
        v = x.get("versus")
        rel = f"{v['relative']:+.2%}" if v and v["relative"] is not None else "-"
        diff = _value(v["mean_diff"], v["se_diff"], signed=True) if v else "-"
        lines.append(f"| {x['bin']} | {_range(x['low'], x['high'])} | {', '.join(x['rows'])} | {x['average']:.4f} "
                     f"| {x['best_row']} ({x['best']:.4f}) | {here} | {rel} | {diff} | {v['verdict'] if v else '-'} |")
    return lines


def budgets_table(r: dict) -> list[str]:
    """Per latency budget: the searched student's predicted cost, the bin it lands in, and against that bin's
    random average and best random genotype (paired over seeds)."""
    m, unit = r["metric"], r["bins"]["unit"]
    lines = [f"Latency budgets (--budgets-ms, on the {r['bins']['basis']}): one search per budget, its genotype "
             "trained fresh like the random rows and compared with the random genotypes of the cost bin it lands in.",
             "", f"| budget ({unit}) | student | predicted per seed | met | bin | {m} | bin average | vs bin average "
             f"| best random of bin | vs best random |", "|---:|---|---|---|---:|---:|---:|---|---|---|"]
    for b in r["budgets"]:
        ref = next(x for x in r["rows"] if x["name"] == b["reference"])
        cost = " / ".join("-" if c is None else f"{c:.2f}" for c in b["predicted_ms"])
        value = _value(ref["metric"], ref.get("metric_se"))
        if "random" in b:
            va, vb, s = b["versus_average"], b["versus_best"], b["random"]
            avg = f"{s['average']:.4f}"
            vs_avg = f"{_value(va['mean_diff'], va['se_diff'], signed=True)}: {va['verdict']}"
            best = f"{s['best_row']} ({s['best']:.4f})"
            vs_best = f"{_value(vb['mean_diff'], vb['se_diff'], signed=True)}: {vb['verdict']}"
        else:
            avg = vs_avg = best = vs_best = "- (no random genotype in this bin)"
        lines.append(f"| {b['budget_ms']:g} | {b['reference']} | {cost} | {'yes' if b['met'] else 'NO'} | "
                     f"{b['bin'] or '-'} | {value} | {avg} | {vs_avg} | {best} | {vs_best} |")
    return lines
