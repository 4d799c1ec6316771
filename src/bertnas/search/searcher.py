"""AdaBERT's differentiable search: Gumbel-softmax over ops and depth, alternating weight/alpha steps.

Each batch: (1) sample an architecture, step the supernet weights (and distillation heads) on
(1 - gamma) CE + gamma KD; (2) every ``arch_update_interval`` batches, sample again and step the
architecture weights on the same batch with the full loss including beta * L_E (single-level, as the
AdaBERT code does). Temperature anneals from tau_max to tau_min. A checkpoint after every epoch makes
the search resumable; the result is a genotype plus a derived student that keeps the searched weights.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.encode import Encoded, batches, num_batches, to_device
from ..data.examples import TaskSpec
from ..models.adabert import AdaBertConfig, AdaBertForSequenceClassification
from ..spaces.adabert_supernet import AdaBertSupernet, ProjectedEmbeddings
from ..spaces.costs import measure_op_costs
from ..spaces.genotype import Genotype
from ..spaces.ops import PRIMITIVES
from ..training.common import (KDHeads, Targets, autocast, epoch_generators, evaluate, load_checkpoint,
                               save_checkpoint, student_loss)
from ..training.losses import adabert_loss, efficiency_loss, normalized_op_costs
from ..utils import progress
from .architecture import Architecture
from .derive import CollapseReport, derive_genotype
from .gumbel import auto_decay, temperature

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


def op_cost_tensor(hidden: int, seq_len: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Normalized costs of the 10 ops, measured from the op modules at this hidden size and length."""
    measured = measure_op_costs(hidden, seq_len)
    params = torch.tensor([measured[o]["params"] for o in PRIMITIVES], dtype=torch.float64)
    flops = torch.tensor([measured[o]["flops"] for o in PRIMITIVES], dtype=torch.float64)
    costs = normalized_op_costs(params, flops)
    return costs, {o: round(float(c), 5) for o, c in zip(PRIMITIVES, costs)}


def build_supernet(cfg: RunConfig, spec: TaskSpec, word_table: torch.Tensor, position_table: torch.Tensor | None,
                   sep_token_id: int | None) -> AdaBertSupernet:
    emb = ProjectedEmbeddings(word_table, position_table, cfg.hidden_size, cfg.dropout,
                              max_positions=max(cfg.max_seq_len, cfg.eval_seq_len, 512))
    return AdaBertSupernet(emb, cfg.hidden_size, cfg.k_max, spec.num_labels, spec.pair, cfg.dropout, sep_token_id)


def student_config(cfg: RunConfig, spec: TaskSpec, genotype: Genotype, supernet: AdaBertSupernet,
                   pad_token_id: int, sep_token_id: int | None) -> AdaBertConfig:
    labels = spec.labels or ["score"]
    return AdaBertConfig(
        vocab_size=supernet.embeddings.word_table.size(0),
        max_position_embeddings=supernet.embeddings.max_positions,
        hidden_size=cfg.hidden_size, genotype=genotype.to_dict(), pair_input=spec.pair, dropout=cfg.dropout,
        pad_token_id=pad_token_id, sep_token_id=sep_token_id, num_labels=spec.num_labels,
        id2label={i: l for i, l in enumerate(labels)}, label2id={l: i for i, l in enumerate(labels)},
        problem_type="regression" if spec.is_regression else "single_label_classification",
        task=spec.name,
    )


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
) -> tuple[Architecture, KDHeads, list[dict]]:
    """Run the search loop; returns the learned architecture weights, the heads and per-epoch history."""
    arch = Architecture(cfg.k_max).to(device)
    heads = KDHeads(cfg.k_max, cfg.hidden_size, spec.num_labels).to(device)
    supernet.to(device)
    costs, _ = op_cost_tensor(cfg.hidden_size, cfg.eval_seq_len)
    costs = costs.to(device)
    depth_values = torch.arange(1, cfg.k_max + 1, dtype=torch.float32, device=device)
    weights = list(supernet.parameters()) + list(heads.parameters())
    w_opt = torch.optim.AdamW(weights, lr=cfg.search_lr, weight_decay=cfg.weight_decay)
    a_opt = torch.optim.Adam(arch.parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
    decay = cfg.tau_decay if cfg.tau_decay is not None else auto_decay(cfg.tau_max, cfg.tau_min, cfg.search_epochs)

    subset = None
    if cfg.search_max_examples and cfg.search_max_examples < len(train):
        g = torch.Generator().manual_seed(cfg.seed)
        subset = sorted(torch.randperm(len(train), generator=g)[: cfg.search_max_examples].tolist())
    n_examples = len(subset) if subset is not None else len(train)
    steps = num_batches(n_examples, cfg.search_batch_size)

    start_epoch, history = 0, []
    state = load_checkpoint(checkpoint, resume_key) if (checkpoint and cfg.resume) else None
    if state is not None:
        supernet.load_state_dict(state["supernet"])
        heads.load_state_dict(state["heads"])
        arch.load_state_dict(state["arch"])
        w_opt.load_state_dict(state["w_opt"])
        a_opt.load_state_dict(state["a_opt"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        logger.info("search: resuming after epoch %d from %s", start_epoch, checkpoint)

    def loss_of(batch, ops_w, depth_w, with_efficiency: bool):
        with autocast(device, cfg.amp):
            out = supernet(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], ops_w, depth_w,
                           sampled_only=cfg.sampled_only)
            ce, kd = student_loss(out.logits, out.states, out.mask, heads, batch, train_targets, spec,
                                  cfg.temperature, cfg.attentive_kd)
        eff = None
        if with_efficiency:
            eff = efficiency_loss(arch.op_probs(), costs, (depth_w * depth_values).sum(), cfg.k_max)
        return adabert_loss(ce.float(), kd.float(), eff, cfg.gamma, cfg.beta)

    for epoch in range(start_epoch, cfg.search_epochs):
        t0 = time.perf_counter()
        shuffle_gen, gumbel_gen = epoch_generators(cfg.seed, epoch)
        supernet.train(), heads.train()
        totals = {"loss": 0.0, "ce": 0.0, "kd": 0.0, "eff": 0.0}
        bar = progress(batches(train, cfg.search_batch_size, shuffle=True, generator=shuffle_gen, subset=subset),
                       total=steps, desc=f"search {epoch + 1}/{cfg.search_epochs}")
        for step, batch in enumerate(bar):
            batch = to_device(batch, device)
            tau = temperature(epoch + step / steps, cfg.tau_max, cfg.tau_min, decay)
            ops_w, depth_w = arch.sample(tau, gumbel_gen)
            parts = loss_of(batch, ops_w, depth_w, with_efficiency=False)
            w_opt.zero_grad(set_to_none=True)
            parts.total.backward()
            w_opt.step()
            if step % cfg.arch_update_interval == 0:
                ops_w, depth_w = arch.sample(tau, gumbel_gen)
                parts = loss_of(batch, ops_w, depth_w, with_efficiency=True)
                grads = torch.autograd.grad(parts.total, list(arch.parameters()), allow_unused=True)
                for p, g in zip(arch.parameters(), grads):
                    p.grad = g
                a_opt.step()
            for k, v in parts.as_dict().items():
                totals[k] += v
            bar.set_postfix(loss=f"{parts.total.item():.3f}", tau=f"{tau:.2f}")

        supernet.eval()
        genotype, report = derive_genotype(arch.alpha, arch.depth_logits, cfg.min_parametric)
        ops_g, depth_g = arch.genotype_weights(genotype)
        dev_metrics = evaluate(
            lambda b: supernet(b["input_ids"], b["attention_mask"], b["token_type_ids"], ops_g, depth_g,
                               sampled_only=True).logits,
            dev, spec, device,
        )
        record = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 1), "tau": round(tau, 4),
                  **{k: round(v / steps, 5) for k, v in totals.items()},
                  "dev_derived": dev_metrics, "genotype": str(genotype),
                  "parameter_free_mass": [round(x, 3) for x in report.parameter_free_mass],
                  "depth_probs": [round(float(p), 3) for p in arch.depth_probs().detach()]}
        history.append(record)
        logger.info("search epoch %d/%d (%.0fs): loss %.4f, dev (derived arch) %s, genotype %s",
                    epoch + 1, cfg.search_epochs, record["seconds"], record["loss"], dev_metrics, genotype)
        for w in report.warnings:
            logger.warning("search epoch %d: %s", epoch + 1, w)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "supernet": supernet.state_dict(), "heads": heads.state_dict(), "arch": arch.state_dict(),
                "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(), "epoch": epoch + 1, "history": history,
                "resume_key": resume_key,
            })
    return arch, heads, history


def finish_search(cfg: RunConfig, spec: TaskSpec, supernet: AdaBertSupernet, arch: Architecture, heads: KDHeads,
                  history: list[dict], pad_token_id: int, sep_token_id: int | None) -> SearchResult:
    """Derive the genotype and build the student that keeps the searched weights."""
    supernet.cpu()
    genotype, report = derive_genotype(arch.alpha, arch.depth_logits, cfg.min_parametric)
    config = student_config(cfg, spec, genotype, supernet, pad_token_id, sep_token_id)
    student = supernet.derive_student(genotype, config)
    kept = KDHeads(genotype.depth, cfg.hidden_size, spec.num_labels)
    kept.heads.load_state_dict({k: v for k, v in heads.cpu().heads.state_dict().items()
                                if int(k.split(".")[0]) < genotype.depth})
    _, cost_table = op_cost_tensor(cfg.hidden_size, cfg.eval_seq_len)
    return SearchResult(
        genotype=genotype, report=report, student=student, heads=kept,
        op_probs=[[round(float(p), 5) for p in row] for row in arch.op_probs().detach().cpu()],
        depth_probs=[round(float(p), 5) for p in arch.depth_probs().detach().cpu()],
        op_costs=cost_table, history=history,
    )
