"""Search spaces: the op table, genotypes, AdaBERT's cells and supernet."""
from .genotype import EDGES, NUM_EDGES, NUM_NODES, Genotype
from .ops import OPS, PARAMETER_FREE, PRIMITIVES, create_op

__all__ = ["EDGES", "NUM_EDGES", "NUM_NODES", "Genotype", "OPS", "PARAMETER_FREE", "PRIMITIVES", "create_op"]
