"""The searched architecture as a small, immutable, printable value.

A cell has two inputs (index 0 = output of cell k-2, index 1 = output of cell k-1) and three intermediate
nodes (indices 2, 3, 4 as inputs of later nodes). Node j may read any earlier index, so node 0 has 2
candidate edges, node 1 has 3 and node 2 has 4: 9 edges, numbered in that order (see :func:`edge_index`).
A derived genotype keeps two edges per node and one op per edge; the same cell is stacked ``depth`` times.

String form (one decoder: :meth:`Genotype.parse`)::

    K=3 | n0: conv_3<0 dil_conv_5<1 | n1: max_pool_3<1 conv_7<2 | n2: skip_connect<0 conv_3<3
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import BertnasError

NUM_INPUTS = 2
NUM_NODES = 3
NUM_EDGES = sum(NUM_INPUTS + j for j in range(NUM_NODES))  # 9


def edge_index(node: int, source: int) -> int:
    """Global index (0..8) of the edge from ``source`` into intermediate node ``node``."""
    if not 0 <= node < NUM_NODES or not 0 <= source < NUM_INPUTS + node:
        raise ValueError(f"no edge from {source} into node {node}")
    return sum(NUM_INPUTS + j for j in range(node)) + source


EDGES: tuple[tuple[int, int], ...] = tuple(
    (node, source) for node in range(NUM_NODES) for source in range(NUM_INPUTS + node)
)
"""(node, source) of every candidate edge, in global edge order."""


@dataclass(frozen=True)
class Genotype:
    """A derived cell (kept edges with their ops) and the number of stacked cells."""

    edges: tuple[tuple[int, int, str], ...]  # (node, source, op name), sorted by node then source
    depth: int

    def __post_init__(self) -> None:
        from .ops import PRIMITIVES

        if self.depth < 1:
            raise BertnasError(f"genotype depth must be >= 1, got {self.depth}")
        for node, source, op in self.edges:
            if op not in PRIMITIVES:
                raise BertnasError(f"genotype has unknown op {op!r}; known ops: {', '.join(PRIMITIVES)}")
            edge_index(node, source)  # validates
        nodes = {n for n, _, _ in self.edges}
        if nodes != set(range(NUM_NODES)):
            raise BertnasError(f"genotype must give every node 0..{NUM_NODES - 1} at least one edge, got {sorted(nodes)}")

    def ops_of(self, node: int) -> list[tuple[int, str]]:
        return [(s, op) for n, s, op in self.edges if n == node]

    def to_dict(self) -> dict:
        return {"depth": self.depth, "edges": [{"node": n, "source": s, "op": op} for n, s, op in self.edges]}

    @classmethod
    def from_dict(cls, d: dict) -> "Genotype":
        try:
            edges = tuple(sorted((int(e["node"]), int(e["source"]), str(e["op"])) for e in d["edges"]))
            return cls(edges=edges, depth=int(d["depth"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BertnasError(f"not a valid genotype: {d!r} ({exc}); expected keys 'depth' and 'edges'") from exc

    def __str__(self) -> str:
        parts = [f"K={self.depth}"]
        for node in range(NUM_NODES):
            parts.append(f"n{node}: " + " ".join(f"{op}<{s}" for s, op in self.ops_of(node)))
        return " | ".join(parts)

    @classmethod
    def parse(cls, text: str) -> "Genotype":
        """Inverse of ``str(genotype)``."""
        try:
            head, *nodes = [p.strip() for p in text.split("|")]
            depth = int(head.removeprefix("K="))
            edges = []
            for part in nodes:
                name, ops = part.split(":", 1)
                node = int(name.strip().removeprefix("n"))
                for item in ops.split():
                    op, source = item.rsplit("<", 1)
                    edges.append((node, int(source), op))
        except ValueError as exc:
            raise BertnasError(f"cannot parse genotype {text!r}: expected e.g. 'K=3 | n0: conv_3<0 conv_5<1 | ...'") from exc
        return cls(edges=tuple(sorted(edges)), depth=depth)

    @property
    def num_parametric(self) -> int:
        from .ops import PARAMETER_FREE

        return sum(op not in PARAMETER_FREE for _, _, op in self.edges)
