"""AdaBERT's differentiable search: Gumbel-softmax over ops and depth, alternating weight/alpha steps.

Each batch: (1) sample an architecture, step the supernet weights (and distillation heads) on
(1 - gamma) CE + gamma KD of the sampled depth only; (2) every ``arch_update_interval`` batches (after
``search_warmup_epochs`` weight-only epochs), sample again, run all K_max cells once and score every depth
K = 1..K_max by its own CE and KD; the architecture step minimises sum_K y_K L_K + beta * L_E, with y the
straight-through depth sample, so the depth logits see which depth has the lower task loss (as the AdaBERT
code does), not just whether scaling the logits helps. Both steps clip gradients at norm 5 (code).
With ``--efficiency latency`` L_E is the
expected latency from this CPU's op latency table (``costs.LatencyCosts``), optionally above a budget only.
Temperature anneals from tau_max to tau_min. A checkpoint after every epoch makes the search resumable;
the result is a genotype plus a derived student that keeps the searched weights.
Under torchrun each rank trains on its shard of every batch with the same Gumbel samples, and gradients
(weights and architecture alike) are averaged over ranks (``training.distributed``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import RunConfig
from ..data.encode import Encoded, batches, num_batches, to_device
from ..data.split import HoldOut, take
from ..data.examples import TaskSpec
from ..errors import BertnasError
from ..training import distributed as ddp
from ..training.amp import Precision, autocast
from ..training.evaluation import evaluate
from ..training.loop import Resumable, run_epochs, train_pass
from ..training.losses import LossParts
from ..training.optim import adam, adamw
from .architecture import Architecture
from ..measure.latency_table import LatencyTable
from .costs import TABLE_STAT, LatencyCosts, adabert_latency_table, efficiency_costs, efficiency_table
from .derive import CollapseReport, decisiveness, derive_genotype
from .genotype import Genotype
from .gumbel import auto_decay, gumbel_noise, temperature
from .modeling import AdaBertConfig, AdaBertForSequenceClassification
from .objective import KDHeads, Targets, TargetScale, adabert_loss, depth_loss, efficiency_loss, latency_loss
from .student import derive_student
from .supernet import AdaBertSupernet, ProjectedEmbeddings

logger = logging.getLogger("bertnas")


@dataclass
class SearchResult:
    genotype: Genotype
    report: CollapseReport
    student: AdaBertForSequenceClassification  # derived, with the searched weights
    heads: KDHeads  # distillation heads of the first ``depth`` cells, for retraining
    op_probs: list[list[float]]
    depth_probs: list[float]
    op_costs: dict[str, float]
    history: list[dict] = field(default_factory=list)
    latency: dict | None = None  # --efficiency latency: predicted ms of the student, the budget, the op table


def build_supernet(cfg: RunConfig, spec: TaskSpec, word_table: torch.Tensor, position_table: torch.Tensor | None,
                   sep_token_id: int | None, k_max: int | None = None) -> AdaBertSupernet:
    """The search network of ``cfg`` over the teacher's tables (``k_max`` cells, default ``cfg.k_max``)."""
    emb = ProjectedEmbeddings(word_table, position_table, cfg.hidden_size, cfg.dropout,
                              max_positions=max(cfg.max_seq_len, cfg.eval_seq_len, 512),
                              pair_match=spec.pair and cfg.pair_match)
    return AdaBertSupernet(emb, cfg.hidden_size, k_max or cfg.k_max, spec.num_labels, spec.pair, cfg.dropout,
                           sep_token_id)


def student_config(cfg: RunConfig, spec: TaskSpec, genotype: Genotype, supernet: AdaBertSupernet,
                   pad_token_id: int, sep_token_id: int | None, scale: TargetScale | None = None) -> AdaBertConfig:
    labels = spec.labels or ["score"]
    scale = scale or TargetScale()
    return AdaBertConfig(
        vocab_size=supernet.embeddings.word_table.size(0),
        max_position_embeddings=supernet.embeddings.max_positions,
        hidden_size=cfg.hidden_size, genotype=genotype.to_dict(), pair_input=spec.pair,
        pair_match=supernet.pair_match, dropout=cfg.dropout,
        pad_token_id=pad_token_id, sep_token_id=sep_token_id, num_labels=spec.num_labels,
        id2label={i: l for i, l in enumerate(labels)}, label2id={l: i for i, l in enumerate(labels)},
        problem_type="regression" if spec.is_regression else "single_label_classification",
        task=spec.name, target_mean=scale.mean, target_std=scale.std,
    )


class SearchObjective:
    """The loss of one search step. Weight step: CE + KD of the sampled depth only (cells beyond it are not run).
    Architecture step: one pass over all K_max cells scores every depth by its own CE + KD, weighted by the
    straight-through depth sample y (sum_K y_K L_K: forward value = the sampled depth's loss, gradient to the
    depth logits = how each depth's loss compares), plus beta * L_E."""

    def __init__(self, cfg: RunConfig, spec: TaskSpec, supernet: AdaBertSupernet, heads: KDHeads, arch: Architecture,
                 targets: Targets, costs: torch.Tensor, latency: LatencyCosts | None = None) -> None:
        self.cfg, self.spec, self.supernet, self.heads, self.arch = cfg, spec, supernet, heads, arch
        self.targets, self.costs, self.latency = targets, costs, latency
        self.depth_values = torch.arange(1, cfg.k_max + 1, dtype=torch.float32, device=costs.device)
        self.entropy_weight = 0.0  # --arch-entropy, ramped by the search loop

    def __call__(self, batch: dict[str, torch.Tensor], ops_w: torch.Tensor, depth_w: torch.Tensor,
                 arch_step: bool, all_depths: bool | None = None) -> LossParts:
        cfg = self.cfg
        # the step's one host read: GDAS runs only the sampled op of each edge and the sampled depth, so the graph
        # depends on them (one read for all of them, not one per edge and cell)
        picks = torch.cat([ops_w.argmax(-1), depth_w.argmax(-1, keepdim=True)]).tolist()
        op_index, sampled = picks[:-1], picks[-1] + 1
        depths = list(range(1, cfg.k_max + 1)) if (arch_step if all_depths is None else all_depths) else [sampled]
        losses = []
        with autocast(self.costs.device, cfg.amp, cfg.amp_dtype):
            out = self.supernet(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], ops_w,
                                depths[-1], sampled_only=cfg.sampled_only, grad_cells=sampled, op_index=op_index)
            head_logits = self.heads(out.pooled[: depths[-1] - 1])
            for k in depths:  # y_K = 0 in value for K != sampled: those losses reach only the depth logits
                with torch.set_grad_enabled(torch.is_grad_enabled() and k == sampled):
                    losses.append(depth_loss(self.supernet.logits(out, k), head_logits[: k - 1], batch, self.targets,
                                             self.spec.is_regression, cfg.temperature, cfg.attentive_kd))
        ce, kd = zip(*losses)
        y = depth_w[[k - 1 for k in depths]]  # one-hot in value: only the sampled depth's loss counts forward
        ce, kd = (y * torch.stack(ce)).sum(), (y * torch.stack(kd)).sum()
        eff = None
        if arch_step:
            depth = (depth_w * self.depth_values).sum()
            if self.latency is not None:
                eff = latency_loss(self.arch.op_probs(), self.latency, depth, cfg.latency_budget_ms)
            else:
                eff = efficiency_loss(self.arch.op_probs(), self.costs, depth, cfg.k_max)
        parts = adabert_loss(ce, kd, eff, cfg.gamma, cfg.beta)
        if arch_step and self.entropy_weight > 0:
            parts.total = parts.total + self.entropy_weight * self.arch.entropy()
        return parts


def search(
    cfg: RunConfig,
    spec: TaskSpec,
    train: Encoded,
    dev: Encoded,
    train_targets: Targets,
    supernet: AdaBertSupernet,
    device: torch.device,
    checkpoint: Path | None = None,
    resume_key: str = "",
    latency_table: LatencyTable | None = None,
    holdout: HoldOut | None = None,
) -> tuple[Architecture, KDHeads, list[dict]]:
    """Run the search loop; returns the learned architecture weights, the heads and per-epoch history.

    With ``cfg.efficiency == "latency"`` the op latencies come from ``latency_table`` (default: measured on
    this CPU, or read from the cache, :func:`~bertnas.adabert.costs.adabert_latency_table`). With a
    ``holdout`` (``data.split``), the weights train on its training indices only, each epoch's derived
    architecture is checked on its validation split (dev is only reported), and ``--arch-data val`` takes the
    architecture steps on validation batches (bilevel)."""
    lat = latency_costs(cfg, latency_table)
    arch = Architecture(cfg.k_max).to(device)
    heads = KDHeads(cfg.k_max if cfg.search_distill == "probes" else 0, cfg.hidden_size, spec.num_labels,
                    pair=spec.pair).to(device)  # no heads: depth_loss pairs the final logits with the teacher's only
    supernet.to(device)
    scale = TargetScale.of(train.labels, spec.is_regression)
    objective = SearchObjective(cfg, spec, supernet, heads, arch, train_targets.standardized(scale),
                                efficiency_costs(cfg.hidden_size, cfg.eval_seq_len).to(device), lat)
    weights = list(supernet.parameters()) + list(heads.parameters())
    arch_params = list(arch.parameters())
    w_opt = adamw(weights, lr=cfg.search_lr, weight_decay=cfg.weight_decay)
    a_opt = adam(arch.parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    decay = cfg.tau_decay if cfg.tau_decay is not None else auto_decay(cfg.tau_max, cfg.tau_min, cfg.search_epochs)
    warmup = min(cfg.search_warmup_epochs, cfg.search_epochs - 1)
    if warmup < cfg.search_warmup_epochs:
        logger.warning("search: %d warm-up epochs leave none of %d for the architecture; warming up for %d",
                       cfg.search_warmup_epochs, cfg.search_epochs, warmup)
    held = holdout is not None and holdout.active
    pool = holdout.train if held else None
    n_pool = len(pool) if pool is not None else len(train)
    subset = pool
    if cfg.search_max_examples and cfg.search_max_examples < n_pool:
        g = torch.Generator().manual_seed(cfg.seed)
        picked = torch.randperm(n_pool, generator=g)[: cfg.search_max_examples].tolist()
        subset = sorted(pool[i] for i in picked) if pool is not None else sorted(picked)
    steps = num_batches(len(subset) if subset is not None else len(train), cfg.search_batch_size)
    val = take(train, holdout.val) if held else None
    bilevel = cfg.arch_data == "val" or (cfg.arch_data == "auto" and held)
    if bilevel and not held:
        raise BertnasError("--arch-data val needs a validation split: pass --val-examples N (N > 0) or --arch-data train")
    if bilevel and cfg.search_step == "joint":
        logger.info("search: architecture steps on validation batches (--arch-data): each step is a weight step on "
                    "training data, then an architecture step on held-out data")
    precision = Precision(device, cfg.amp, cfg.amp_dtype)  # --amp: autocast, and a gradient scaler under float16
    state = Resumable("search", checkpoint, cfg.resume, precision.tag(resume_key),
                      supernet=supernet, heads=heads, arch=arch, w_opt=w_opt, a_opt=a_opt, **precision.stateful())
    ddp.broadcast_modules(supernet, heads, arch)  # torchrun: every rank starts from rank 0's weights
    ddp.global_batchnorm(supernet)  # torchrun: BatchNorm statistics of the whole batch, as in one process

    arch_epochs = max(cfg.search_epochs - warmup, 1)

    def epoch_fn(epoch: int, shuffle_gen: torch.Generator, gumbel_gen: torch.Generator) -> dict:
        update_arch = epoch >= warmup
        tau = cfg.tau_max
        signal = GradientSignal()
        arch_batches = (_cycle(train, holdout.val, cfg.search_batch_size, cfg.seed * 1009 + epoch)
                        if bilevel and update_arch else None)

        def update(params: list[torch.nn.Parameter], opt: torch.optim.Optimizer) -> None:
            """One optimizer step on gradients averaged over ranks (the same step on every rank), clipped at 5."""
            ddp.average_gradients(params)
            precision.unscale(opt)
            if opt is a_opt and precision.finite(arch.alpha.grad, arch.depth_logits.grad):  # fp16: skipped steps out
                signal.add(arch.alpha.grad, arch.depth_logits.grad)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            precision.step(opt)

        def step(i: int, batch: dict[str, torch.Tensor]) -> LossParts:
            parts = one_step(i, batch)
            precision.update()  # once per step, after every optimizer stepped
            return parts

        def one_step(i: int, batch: dict[str, torch.Tensor]) -> LossParts:
            nonlocal tau
            tau = temperature(epoch + i / steps, cfg.tau_max, cfg.tau_min, decay)
            ops_w, depth_w = arch.sample(tau, gumbel_gen)
            arch_due = update_arch and i % cfg.arch_update_interval == 0
            objective.entropy_weight = cfg.arch_entropy * min(1.0, (epoch - warmup + i / steps) / arch_epochs)
            if arch_due and cfg.search_step == "joint" and not bilevel:
                return joint_step(batch, ops_w, depth_w)
            parts = objective(batch, ops_w.detach(), depth_w.detach(), arch_step=False)
            w_opt.zero_grad(set_to_none=True)
            precision.backward(ddp.scale_loss(parts.total))
            update(weights, w_opt)
            if arch_due:
                ops_w, depth_w = arch.sample(tau, gumbel_gen)
                if arch_batches is None:
                    arch_parts = objective(batch, ops_w, depth_w, arch_step=True)
                    grads = torch.autograd.grad(precision.scale(ddp.scale_loss(arch_parts.total)), arch_params,
                                                allow_unused=True)
                else:  # bilevel: the architecture learns from held-out batches
                    local, share = ddp.shard(next(arch_batches))
                    with ddp.sharded_step(share):
                        arch_parts = objective(to_device(local, device), ops_w, depth_w, arch_step=True)
                        grads = torch.autograd.grad(precision.scale(ddp.scale_loss(arch_parts.total)),
                                                    arch_params, allow_unused=True)
                for p, g in zip(arch_params, grads):
                    p.grad = g
                update(arch_params, a_opt)
                if arch_batches is None:
                    parts = arch_parts
            return parts

        def joint_step(batch: dict[str, torch.Tensor], ops_w: torch.Tensor, depth_w: torch.Tensor) -> LossParts:
            """Weights and architecture from one sample and one pass over all depths. The depth sample y is
            one-hot in value, so sum_K y_K L_K is the sampled depth's loss and its weight gradient is exactly the
            weight step's; the architecture gradient is the alternate step's, taken before rather than after
            this batch's weight update. Saves the alternate step's separate weight pass."""
            parts = objective(batch, ops_w, depth_w, arch_step=True)
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            precision.backward(ddp.scale_loss(parts.total))
            update(weights, w_opt)
            update(arch_params, a_opt)
            return parts

        supernet.train(), heads.train()
        desc = f"search {epoch + 1}/{cfg.search_epochs}" + ("" if update_arch else " (warm-up)")
        means = train_pass(train, cfg.search_batch_size, shuffle_gen, device, step, desc, subset)
        supernet.eval()
        genotype, report = derive_genotype(arch.alpha, arch.depth_logits, cfg.min_parametric)
        predict = _derived_predictor(cfg, supernet, arch, genotype, scale, device, train, subset)
        dev_metrics = evaluate(predict, dev, spec, device)
        record = {"tau": round(tau, 4), "arch_updates": update_arch, **means, "dev_derived": dev_metrics,
                  "genotype": str(genotype), "parameter_free_mass": [round(x, 3) for x in report.parameter_free_mass],
                  "depth_probs": [round(float(p), 3) for p in arch.depth_probs().detach()],
                  "decisiveness": decisiveness(arch.alpha, arch.depth_logits), "arch_signal": signal.summary()}
        if val is not None:
            record["val_derived"] = evaluate(predict, val, spec, device)
        if lat is not None:
            record["predicted_latency_ms"] = round(lat.predict(genotype), 4)
        logger.info("search epoch %d/%d%s: loss %.4f, dev (derived arch) %s, genotype %s, depth probs %s%s",
                    epoch + 1, cfg.search_epochs, "" if update_arch else " (warm-up)", means["loss"], dev_metrics,
                    genotype, record["depth_probs"],
                    f", predicted {record['predicted_latency_ms']:.2f} ms" if lat is not None else "")
        for w in report.warnings:
            logger.warning("search epoch %d: %s", epoch + 1, w)
        return record

    history = run_epochs(state, cfg.search_epochs, cfg.seed, epoch_fn,  # a deadline never skips the first
                         min_epochs=min(cfg.search_warmup_epochs + 1, cfg.search_epochs))  # architecture epoch
    return arch, heads, history


@torch.no_grad()
def recalibrate_batchnorm(supernet: AdaBertSupernet, ops_w: torch.Tensor, depth: int, data: Encoded,
                          indices: list[int] | None, cfg: RunConfig, device: torch.device) -> None:
    """Re-estimate every BatchNorm's running statistics for one architecture (``ops_w``, ``depth``) from
    ``cfg.bn_recalibration`` training batches (SPOS' recalibration). During the search the running statistics
    average over whichever ops were sampled upstream, so a fixed architecture evaluated with them sees
    mis-scaled activations. Only BatchNorm runs in training mode (dropout stays off); the weights, the
    training-mode behaviour and the random streams of the search are untouched. Every rank draws the same
    batches whole, so the statistics stay identical under torchrun."""
    n = cfg.bn_recalibration
    norms = [m for m in supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if n <= 0 or not norms:
        return
    was_training = supernet.training
    supernet.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the recalibration batches
        m.train()
    gen = torch.Generator().manual_seed(cfg.seed + 31)
    ops_w = ops_w.to(device)
    for i, b in enumerate(batches(data, cfg.search_batch_size, shuffle=True, generator=gen, subset=indices)):
        if i >= n:
            break
        b = to_device(b, device)
        with autocast(device, cfg.amp, cfg.amp_dtype):
            supernet(b["input_ids"], b["attention_mask"], b["token_type_ids"], ops_w, depth)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    supernet.train(was_training)


def _derived_predictor(cfg: RunConfig, supernet: AdaBertSupernet, arch: Architecture, genotype: Genotype,
                       scale: TargetScale, device: torch.device, train: Encoded | None,
                       train_indices: list[int] | None):
    """``predict(batch) -> logits`` of ``genotype`` run with the supernet's weights (on the original target
    scale), after its BatchNorm statistics are re-estimated on ``train[train_indices]`` (``--bn-recalibration``;
    skipped without ``train``)."""
    ops_w, _ = arch.genotype_weights(genotype)
    ops_w = ops_w.to(device)
    if train is not None:
        recalibrate_batchnorm(supernet, ops_w, genotype.depth, train, train_indices, cfg, device)

    def predict(b: dict[str, torch.Tensor]) -> torch.Tensor:
        out = supernet(b["input_ids"], b["attention_mask"], b["token_type_ids"], ops_w, genotype.depth)
        return scale.invert(supernet.logits(out, genotype.depth).float())

    return predict


def _cycle(data: Encoded, indices: list[int], batch_size: int, seed: int):
    """Endless shuffled batches of ``data[indices]`` (the held-out split for bilevel architecture steps); the
    batches keep their indices into ``data``, so cached teacher targets are found."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield from batches(data, batch_size, shuffle=True, generator=gen, subset=indices)


class GradientSignal:
    """Signal-to-noise of the architecture gradients over one epoch: per logit |mean| / std over steps,
    averaged. At the noise floor the steps are noise: Adam then moves the logits by a random walk and the op
    distribution stays flat; a search that decides needs a signal that outlasts the noise."""

    def __init__(self) -> None:
        self.n, self.sums = 0, {}

    def add(self, *grads: torch.Tensor | None) -> None:
        self.n += 1
        for name, g in zip(("ops", "depth"), grads):
            if g is None:
                g = torch.zeros(())
            g = g.detach().float()  # stays on its device: no host sync inside a step
            s1, s2 = self.sums.get(name, (0.0, 0.0))
            self.sums[name] = (s1 + g, s2 + g * g)

    def summary(self) -> dict:
        """Per-logit |mean| / std over the epoch's steps, averaged, and ``noise_floor``: what pure noise gives
        over as many steps (E|mean| / std of n Gaussian draws, sqrt(2 / (pi n))). A value at the floor means the
        steps carried no direction the logits could follow."""
        if self.n < 2:
            return {"steps": self.n}
        out = {"steps": self.n, "noise_floor": round(math.sqrt(2 / (math.pi * self.n)), 4)}
        for name, (s1, s2) in self.sums.items():
            mean = s1 / self.n
            std = (s2 / self.n - mean * mean).clamp_min(0).sqrt()
            out[f"{name}_snr"] = round(float((mean.abs() / std.clamp_min(1e-12)).mean().cpu()), 4)
        return out


def rank_candidates(cfg: RunConfig, spec: TaskSpec, supernet: AdaBertSupernet, arch: Architecture,
                    val: Encoded, device: torch.device, scale: TargetScale | None = None,
                    train: Encoded | None = None, train_indices: list[int] | None = None,
                    costs: LatencyCosts | None = None) -> tuple[Genotype, CollapseReport, list[dict]]:
    """The architecture to keep: the most likely one and ``cfg.derive_candidates - 1`` more drawn near it (Gumbel
    perturbations of the logits scaled by tau_min, i.e. draws from softmax(alpha / tau_min), the final
    distribution sharpened to the final temperature), each scored on ``val`` with the supernet's
    weights (BatchNorm statistics re-estimated per candidate on ``train[train_indices]`` with
    ``--bn-recalibration``); the best headline metric wins (ties: the earlier, so the most likely). The supernet
    is left with the winner's BatchNorm statistics, which the derived student copies. Returns the winner, the
    collapse report of the weights and every candidate's score.

    With a latency budget (``costs`` and ``--latency-budget-ms``) only candidates predicted within it are scored
    and can win, so the budget holds for the student handed back, not only for the expected cost the search
    priced; when no draw meets it, the cheapest draw is kept, with a warning."""
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    seen, scored, over_budget = set(), [], []
    scale = scale or TargetScale()
    budget = cfg.latency_budget_ms if costs is not None else None
    supernet.to(device).eval()
    best = None

    def score(genotype: Genotype, report: CollapseReport, predicted: float | None, most_likely: bool, best):
        predict = _derived_predictor(cfg, supernet, arch, genotype, scale, device, train, train_indices)
        with torch.no_grad():
            metrics = evaluate(predict, val, spec, device)
        scored.append({"genotype": str(genotype), "val": metrics, "most_likely": most_likely,
                       **({"predicted_ms": round(predicted, 4)} if predicted is not None else {})})
        return (genotype, report, metrics) if best is None or metrics[spec.headline] > best[2][spec.headline] else best
    for i in range(cfg.derive_candidates * 4):  # draws may repeat: try a few times as many
        if len(scored) >= cfg.derive_candidates:
            break
        if i == 0:
            alpha, depth = arch.alpha, arch.depth_logits
        else:
            alpha = arch.alpha.detach() + cfg.tau_min * gumbel_noise(arch.alpha.shape, gen).to(arch.alpha)
            depth = arch.depth_logits.detach() + cfg.tau_min * gumbel_noise(arch.depth_logits.shape, gen).to(alpha)
        genotype, report = derive_genotype(alpha, depth, cfg.min_parametric)
        if str(genotype) in seen:
            continue
        seen.add(str(genotype))
        predicted = costs.predict(genotype) if costs is not None else None
        if budget is not None and predicted > budget:
            over_budget.append((predicted, i, genotype, report))
            continue
        best = score(genotype, report, predicted, i == 0, best)
    if best is None:  # every draw over the budget: the cheapest of them
        predicted, i, genotype, report = min(over_budget, key=lambda o: (o[0], o[1]))
        logger.warning("derivation: none of %d architectures drawn meets the latency budget %g ms; keeping the "
                       "cheapest (%.2f ms predicted): raise --beta or --latency-budget-ms, or search longer",
                       len(over_budget), budget, predicted)
        best = score(genotype, report, predicted, i == 0, best)
    elif over_budget:
        logger.info("derivation: %d architectures drawn over the latency budget %g ms left out", len(over_budget),
                    budget)
    if len(scored) < cfg.derive_candidates:
        logger.warning("derivation: only %d distinct architectures in %d draws near the most likely one (the "
                       "distribution is sharp); ranking those", len(scored), cfg.derive_candidates * 4)
    logger.info("derivation: %d candidate architectures scored on the validation split; kept %s (%s %.4f)",
                len(scored), best[0], spec.headline, best[2][spec.headline])
    if train is not None and str(best[0]) != scored[-1]["genotype"]:  # the last scored left its own statistics
        _derived_predictor(cfg, supernet, arch, best[0], scale, device, train, train_indices)
    _, report = derive_genotype(arch.alpha, arch.depth_logits, cfg.min_parametric)  # of the weights, not a draw
    return best[0], report, scored


def finish_search(cfg: RunConfig, spec: TaskSpec, supernet: AdaBertSupernet, arch: Architecture, heads: KDHeads,
                  history: list[dict], pad_token_id: int, sep_token_id: int | None,
                  train_labels: torch.Tensor | None = None, latency_table: LatencyTable | None = None,
                  chosen: tuple[Genotype, CollapseReport] | None = None) -> SearchResult:
    """Derive the genotype and build the student that keeps the searched weights (regression: pass the
    training labels, whose statistics the student maps its output back with). With ``--efficiency latency``
    the result also holds the student's predicted latency and whether it meets the budget."""
    supernet.cpu()
    genotype, report = chosen or derive_genotype(arch.alpha, arch.depth_logits, cfg.min_parametric)
    config = student_config(cfg, spec, genotype, supernet, pad_token_id, sep_token_id,
                            TargetScale.of(train_labels, spec.is_regression) if train_labels is not None else None)
    student = derive_student(supernet, genotype, config)
    kept = KDHeads(genotype.depth if cfg.search_distill == "probes" else 0, cfg.hidden_size, spec.num_labels,
                   pair=spec.pair)
    kept.heads.load_state_dict({k: v for k, v in heads.cpu().heads.state_dict().items()
                                if int(k.split(".")[0]) < genotype.depth})
    cost_table = efficiency_table(cfg.hidden_size, cfg.eval_seq_len)
    return SearchResult(
        genotype=genotype, report=report, student=student, heads=kept,
        op_probs=[[round(float(p), 5) for p in row] for row in arch.op_probs().detach().cpu()],
        depth_probs=[round(float(p), 5) for p in arch.depth_probs().detach().cpu()],
        op_costs=cost_table, history=history, latency=latency_report(cfg, genotype, latency_table),
    )


def latency_costs(cfg: RunConfig, table: LatencyTable | None = None) -> LatencyCosts | None:
    """The op latencies the search prices with (None unless ``--efficiency latency``)."""
    if cfg.efficiency != "latency":
        return None
    table = table if table is not None else adabert_latency_table(cfg)
    return LatencyCosts.of(table, cfg.hidden_size, cfg.table_seq_len, cfg.latency_table_batch, cfg.k_max)


def latency_report(cfg: RunConfig, genotype: Genotype, table: LatencyTable | None = None) -> dict | None:
    """Predicted latency of the derived student and whether it meets the budget (logged, and saved in
    search/genotype.json); None unless ``--efficiency latency``."""
    costs = latency_costs(cfg, table)
    if costs is None:
        return None
    predicted = costs.predict(genotype)
    budget = cfg.latency_budget_ms
    meets = None if budget is None else predicted <= budget
    logger.info("derived student: predicted latency %.2f ms (batch %d, seq %d, %d threads, this CPU)%s", predicted,
                costs.batch, costs.seq_len, cfg.table_threads,
                "" if budget is None else f", budget {budget:g} ms: {'met' if meets else 'NOT met'}")
    if meets is False:
        logger.warning("the derived student's predicted latency %.2f ms exceeds the budget %g ms: raise --beta, "
                       "search longer, or lower --k-max", predicted, budget)
    return {"efficiency": "latency", "predicted_ms": round(predicted, 4), "budget_ms": budget, "meets_budget": meets,
            "threads": cfg.table_threads, "statistic": table.stat if table is not None else TABLE_STAT,
            **costs.to_dict()}
