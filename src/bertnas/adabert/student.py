"""From the searched supernet to the final model: the genotype's ops with their searched weights.

Its own module because it joins the two sides of the space: ``modeling`` (the final model) and ``supernet`` each
import only the space's leaves (ops, genotype, blocks), and this module imports both.
"""
from __future__ import annotations

import torch

from .modeling import AdaBertConfig, AdaBertForSequenceClassification
from .supernet import AdaBertSupernet, ProjectedEmbeddings
from .genotype import Genotype, edge_index


@torch.no_grad()
def copy_embeddings(student: AdaBertForSequenceClassification, embeddings: ProjectedEmbeddings) -> None:
    """Give ``student`` the search-time embeddings as plain tables: words and positions folded, the norm and (pairs
    with ``pair_match``) the exact-match vectors as they are."""
    words, positions = embeddings.folded()
    student.embeddings.word_embeddings.weight.copy_(words)
    student.embeddings.position_embeddings.weight.copy_(positions[: student.config.max_position_embeddings])
    student.embeddings.norm.load_state_dict(embeddings.norm.state_dict())
    if student.embeddings.match_embeddings is not None:
        student.embeddings.match_embeddings.load_state_dict(embeddings.match_embeddings.state_dict())


@torch.no_grad()
def derive_student(supernet: AdaBertSupernet, genotype: Genotype, config: AdaBertConfig) -> AdaBertForSequenceClassification:
    """Build the final model of ``genotype`` and copy in the searched weights (embeddings folded). Convs keep
    their kernels and BatchNorm statistics and get fresh affine parameters (the search's BatchNorm has none).
    ``config`` must compare pairs as the supernet did (``pair_head``)."""
    if config.pair_input and config.pair_head != supernet.pair_head:
        raise ValueError(f"the student's pair_head {config.pair_head!r} is not the supernet's {supernet.pair_head!r}")
    if config.pair_input and config.pair_match != supernet.pair_match:
        raise ValueError(f"the student's pair_match {config.pair_match} is not the supernet's {supernet.pair_match}")
    student = AdaBertForSequenceClassification(config)
    copy_embeddings(student, supernet.embeddings)
    for k in range(genotype.depth):
        searched, derived = supernet.cells[k], student.cells[k]
        derived.node_logits.copy_(searched.node_logits)
        for node, source, op in genotype.edges:
            missing, unexpected = derived.ops[f"{node}_{source}"].load_state_dict(
                searched.edges[edge_index(node, source)].ops[op].state_dict(), strict=False)
            assert not unexpected and all(n.endswith(("weight", "bias")) for n in missing), (missing, unexpected)
    student.classifier.layer_logits.copy_(supernet.classifier.layer_logits[: genotype.depth])
    student.classifier.dense.load_state_dict(supernet.classifier.dense.state_dict())
    return student
