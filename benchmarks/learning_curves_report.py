"""The report of ``benchmarks/learning_curves.py``: recipes' dev metric against wall time, a table and a plot.

A recipe is (copies, search subset, search epochs, distillation, further-training epochs e). Its wall time is
the sum of its measured pieces: teacher pass (train + dev) + probes + copies' labelling (seed 0's labelling of
the largest set, per copy) + search + further training up to epoch e (the piece's own loading and saving
included) + evaluate. Its metric is what a run reports: the dev metric of the epoch in 0..e best on the
validation split. Means over seeds with standard errors (n - 1).
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path


def _se(xs: list[float]) -> float:
    return statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan")


def _loop_seconds(piece: dict, prefix: str) -> float:
    return sum(r["seconds"] for r in piece["loops"] if r["desc"].startswith(prefix))


def collect(out: Path) -> dict:
    pieces = {p.stem: json.loads(p.read_text()) for p in (out / "pieces").glob("*.json")}
    probe = pieces["probe"]
    info = json.loads((out / "probe" / "probes" / "probes.json").read_text())
    headline = info["headline"]
    copies_made = probe["augment_examples"] // probe["n_train"] if probe["n_train"] else 0
    label_s = _loop_seconds(probe, "teacher (augmented)")
    fixed = {"teacher_s": _loop_seconds(probe, "teacher train") + _loop_seconds(probe, "teacher dev"),
             "probes_s": _loop_seconds(probe, "probes"), "copy_s": label_s / max(copies_made, 1),
             "probe_piece_s": probe["seconds"], "evaluate_s": pieces.get("evaluate", {}).get("seconds", 0.0)}
    # what the probe stage spends besides its loops (loading the teacher and data, saving): counted once
    fixed["probe_other_s"] = max(probe["seconds"] - fixed["teacher_s"] - fixed["probes_s"] - label_s, 0.0)
    rows: dict[tuple, list[dict]] = {}
    for name, piece in pieces.items():
        if "copies" not in piece:
            continue
        search = pieces[piece["search"]]
        hist = piece["history"]
        epoch_s = [h.get("seconds", 0.0) for h in hist[1:]]
        overhead = piece["seconds"] - sum(epoch_s)
        for e in range(1, piece["retrain_epochs"] + 1):
            best = max(hist[: e + 1], key=lambda h: h.get("val", h["dev"])[headline])  # first best, as the run
            wall = (fixed["teacher_s"] + fixed["probes_s"] + fixed["probe_other_s"] + piece["copies"] * fixed["copy_s"]
                    + search["seconds"] + overhead + sum(epoch_s[:e]) + fixed["evaluate_s"])
            key = (piece["copies"], search["subset"], search["search_epochs"], piece["distill"], e, piece["retrain_epochs"])
            rows.setdefault(key, []).append({"seed": piece["seed"], "dev": best["dev"], "wall_s": wall,
                                             "search_s": search["seconds"], "genotype": search["genotype"]})
    return {"headline": headline, "teacher": info["teacher_dev"], "task": info["task"], "fixed": fixed, "rows": rows}


def summarize(data: dict) -> list[dict]:
    headline, teacher = data["headline"], data["teacher"]
    table = []
    for (c, subset, se_, distill, e, of), runs in sorted(data["rows"].items(), key=lambda kv: kv[0][:5]):
        metrics = {m: [r["dev"][m] for r in runs] for m in runs[0]["dev"]}
        table.append({
            "copies": c, "search_subset": subset, "search_epochs": se_, "distill": distill, "retrain_epochs": e,
            "schedule_epochs": of, "seeds": len(runs),
            "minutes": statistics.mean(r["wall_s"] for r in runs) / 60,
            **{m: statistics.mean(v) for m, v in metrics.items()},
            **{f"{m}_se": _se(v) for m, v in metrics.items()},
            "vs_teacher": 100 * (statistics.mean(metrics[headline]) - teacher[headline]),
        })
    core = [r for r in table if r["distill"] == "probes"]
    for r in table:  # Pareto: no other recipe is both quicker and better
        r["pareto"] = r["distill"] == "probes" and not any(
            o is not r and o["minutes"] <= r["minutes"] and o[headline] > r[headline] for o in core)
    return table


def markdown(data: dict, table: list[dict], command: str) -> str:
    h = data["headline"]
    teacher = data["teacher"]
    f = data["fixed"]
    extra = [m for m in ("accuracy",) if m != h and m in teacher]
    lines = [f"```bash\n{command}\n```", "",
             f"Teacher dev {h} {teacher[h]:.4f}" + "".join(f", {m} {teacher[m]:.4f}" for m in extra)
             + f". Fixed pieces: teacher pass {f['teacher_s'] / 60:.1f} min, probes {f['probes_s']:.0f} s, "
               f"labelling one copy of the training set {f['copy_s'] / 60:.1f} min, evaluate {f['evaluate_s']:.0f} s.", "",
             f"| copies | search subset x epochs | distill | further epochs | seeds | wall min | dev {h} | vs teacher |"
             + "".join(f" dev {m} |" for m in extra) + " Pareto |",
             "|---:|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(extra) + "---|"]
    for r in table:
        of = f" (of {r['schedule_epochs']})" if r["schedule_epochs"] != r["retrain_epochs"] else ""
        lines.append(f"| {r['copies']} | {r['search_subset']} x {r['search_epochs']} | {r['distill']} | "
                     f"{r['retrain_epochs']}{of} | {r['seeds']} | {r['minutes']:.1f} | {r[h]:.4f} ± {r[h + '_se']:.4f} | "
                     f"{r['vs_teacher']:+.1f} |" + "".join(f" {r[m]:.4f} ± {r[m + '_se']:.4f} |" for m in extra)
                     + (" **yes** |" if r["pareto"] else " |"))
    return "\n".join(lines)


def plot(data: dict, table: list[dict], path: Path, yardstick_min: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = data["headline"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    groups: dict[tuple, list[dict]] = {}
    for r in table:
        groups.setdefault((r["copies"], r["search_subset"], r["search_epochs"], r["distill"]), []).append(r)
    for (c, subset, se_, distill), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["retrain_epochs"])
        label = f"{c} copies" + ("" if (subset, se_, distill) == _core(table) else f", search {subset} x {se_}"
                                 + (", logits KD" if distill != "probes" else ""))
        ax.errorbar([r["minutes"] for r in rs], [r[h] for r in rs], yerr=[r[h + "_se"] for r in rs], marker="o",
                    capsize=3, label=label, linestyle="-" if (subset, se_, distill) == _core(table) else ":")
    front = sorted([r for r in table if r["pareto"]], key=lambda r: r["minutes"])
    ax.plot([r["minutes"] for r in front], [r[h] for r in front], color="black", linewidth=1, alpha=0.5,
            label="Pareto front")
    ax.axhline(data["teacher"][h], color="gray", linestyle="--", label=f"teacher {data['teacher'][h]:.3f}")
    if yardstick_min:
        ax.set_xlim(right=max(ax.get_xlim()[1], 3 * yardstick_min * 1.08))
        for k in (1, 3):
            ax.axvline(k * yardstick_min, color="gray", linestyle=":", alpha=0.7)
            ax.text(k * yardstick_min, ax.get_ylim()[0], f" {k} teacher epoch{'s' if k > 1 else ''}", fontsize=8,
                    rotation=90, va="bottom")
    ax.set_xlabel("wall time of the whole run on this CPU (min)")
    ax.set_ylabel(f"dev {h} (mean over seeds ± se)")
    ax.set_title(f"{data['task']}: accuracy per minute of the AdaBERT recipe")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _core(table: list[dict]) -> tuple:
    """The (search subset, search epochs, distill) with the most rows: the study's core search."""
    counts: dict[tuple, int] = {}
    for r in table:
        k = (r["search_subset"], r["search_epochs"], r["distill"])
        counts[k] = counts.get(k, 0) + r["seeds"]
    return max(counts, key=counts.get)


def write_report(out: Path, docs: Path | None = None, yardstick_min: float | None = None) -> None:
    data = collect(out)
    table = summarize(data)
    study = json.loads((out / "study.json").read_text())
    a = study["args"]
    command = ("python benchmarks/learning_curves.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in a.items() if k in ("task", "data_dir", "teacher", "out", "seeds",
                                                                     "copies", "retrain_epochs", "subset",
                                                                     "search_epochs", "extra_copies") and v))
    docs = docs or out
    stem = f"learning_curves_{data['task']}"
    (docs / f"{stem}.md").write_text(markdown(data, table, command) + "\n")
    (docs / f"{stem}.json").write_text(json.dumps({"fixed": data["fixed"], "teacher": data["teacher"],
                                                   "headline": data["headline"], "rows": table}, indent=1) + "\n")
    plot(data, table, docs / f"{stem}.png", yardstick_min)
    print((docs / f"{stem}.md").read_text())


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--docs", type=Path)
    ap.add_argument("--yardstick-min", type=float, help="one teacher fine-tuning epoch here, in minutes")
    args = ap.parse_args()
    write_report(args.out, args.docs, args.yardstick_min)
