"""NAS-BERT's search space: the op table, a block path as a value, the chain supernet.

A model is N blocks; block n has one hidden size and ``layers_per_block`` searchable layers, each one op of
:data:`OPS` (identities only at the block's tail). Every op is a whole sub-layer with its own residual and
LayerNorm, so ops are interchangeable. Shapes: B batch, L tokens, C hidden; ``mask`` is (B, L), 1 = token.

The supernet holds, per block, layer and hidden size, one module per op (nothing shared across sizes, as in
the paper), plus linear adapters teacher-size -> hidden (block input) and hidden -> teacher-size (output).
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BertnasError

IDENTITY = "identity"


def num_heads(hidden: int) -> int:
    """Heads of an attention op: hidden / 64 as in BERT, at least 1 (tiny test sizes)."""
    return max(1, hidden // 64)


class MultiHeadAttention(nn.Module):
    """Self-attention sub-layer: attention -> dropout -> residual -> LayerNorm (post-LN, as BERT)."""

    def __init__(self, hidden: int, dropout: float = 0.1, eps: float = 1e-12) -> None:
        super().__init__()
        if hidden % num_heads(hidden):
            raise ValueError(f"hidden size {hidden} is not divisible by its {num_heads(hidden)} heads")
        self.heads = num_heads(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, L, D)
        keep = mask.bool()[:, None, None, :]  # (B, 1, 1, L)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=self.dropout.p if self.training else 0.0)
        attn = attn.transpose(1, 2).reshape(b, length, c)  # (B, L, C)
        return self.norm(x + self.dropout(self.out(attn)))


class FeedForward(nn.Module):
    """Feed-forward sub-layer: C -> 4C -> GELU -> C -> dropout -> residual -> LayerNorm."""

    def __init__(self, hidden: int, dropout: float = 0.1, eps: float = 1e-12) -> None:
        super().__init__()
        self.inner = nn.Linear(hidden, 4 * hidden)
        self.outer = nn.Linear(4 * hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.outer(F.gelu(self.inner(x)))))


class SepConv(nn.Module):
    """Separable convolution, twice: depthwise conv k -> pointwise -> GELU -> dropout -> residual -> LayerNorm.

    Padding tokens are zeroed before each depthwise conv so they never leak into real tokens.
    """

    def __init__(self, hidden: int, kernel: int, dropout: float = 0.1, eps: float = 1e-12) -> None:
        super().__init__()
        self.depthwise = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden) for _ in range(2))
        self.pointwise = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden, eps=eps) for _ in range(2))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[..., None].to(x.dtype)  # (B, L, 1)
        for depthwise, pointwise, norm in zip(self.depthwise, self.pointwise, self.norms):
            y = depthwise((x * keep).transpose(1, 2)).transpose(1, 2)  # (B, L, C)
            x = norm(x + self.dropout(F.gelu(pointwise(y))))
        return x


class Identity(nn.Module):
    """No layer: only allowed at a block's tail (a shallower block)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x


#: The op table: name -> factory(hidden, dropout). Order is the canonical order of the space.
OPS: dict[str, Callable[[int, float], nn.Module]] = {
    "mha": lambda c, p: MultiHeadAttention(c, p),
    "ffn": lambda c, p: FeedForward(c, p),
    "sep3": lambda c, p: SepConv(c, 3, p),
    "sep5": lambda c, p: SepConv(c, 5, p),
    "sep7": lambda c, p: SepConv(c, 7, p),
    IDENTITY: lambda c, p: Identity(),
}
LAYER_OPS = tuple(op for op in OPS if op != IDENTITY)


def create_op(name: str, hidden: int, dropout: float = 0.1) -> nn.Module:
    if name not in OPS:
        raise ValueError(f"unknown NAS-BERT op {name!r}; known: {', '.join(OPS)}")
    return OPS[name](hidden, dropout)


@dataclass
class SpaceConfig:
    """Sizes of the supernet; saved as ``space.json`` in the run directory.

    Args:
        teacher_hidden: hidden size of the teacher (adapters map to and from it).
        teacher_layers: layers of the teacher; cut into ``num_blocks`` blocks as equal as whole layers allow.
        num_blocks: blocks of the student (paper: 4); at most ``teacher_layers``.
        layers_per_block: searchable layers per block (paper: 6, i.e. 24 sub-layers in all).
        hidden_sizes: hidden sizes a block may take (paper: 128, 192, 256, 384, 512).
        ops: op names a layer may take (identity is added at the tail automatically).
        min_depth: fewest non-identity layers in a block (paper: 1).
        dropout: dropout inside every op.
    """

    teacher_hidden: int = 384
    teacher_layers: int = 6
    num_blocks: int = 3
    layers_per_block: int = 2
    hidden_sizes: tuple[int, ...] = (128, 192, 256, 384)
    ops: tuple[str, ...] = LAYER_OPS
    min_depth: int = 1
    dropout: float = 0.1

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        self.ops = tuple(self.ops)

    def validate(self) -> "SpaceConfig":
        if self.num_blocks < 1 or self.layers_per_block < 1:
            raise BertnasError(f"num_blocks and layers_per_block must be >= 1, got {self.num_blocks}, {self.layers_per_block}")
        if self.num_blocks > self.teacher_layers:
            raise BertnasError(f"the teacher has {self.teacher_layers} layers, fewer than {self.num_blocks} blocks: "
                               f"pick --num-blocks {self.teacher_layers} or fewer")
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise BertnasError(f"hidden sizes must be positive, got {self.hidden_sizes}")
        for h in self.hidden_sizes:
            if h % num_heads(h):
                raise BertnasError(f"hidden size {h} does not split into {num_heads(h)} attention heads (hidden/64): use multiples of 64, e.g. 128, 192, 256")
        unknown = [op for op in self.ops if op not in LAYER_OPS]
        if unknown or not self.ops:
            raise BertnasError(f"unknown ops {unknown}: choose from {', '.join(LAYER_OPS)}")
        if not 1 <= self.min_depth <= self.layers_per_block:
            raise BertnasError(f"min_depth must be in 1..{self.layers_per_block}, got {self.min_depth}")
        return self

    def boundaries(self) -> list[int]:
        """Teacher hidden-state indices at block edges: 0 (embeddings), then the last layer of each block.

        Equal blocks when the layers divide evenly (12 in 4: 0,3,6,9,12); otherwise as near equal as whole
        layers allow (6 in 4: 0,2,3,5,6), so a 6-layer teacher can still teach the paper's 4 blocks."""
        return [(n * self.teacher_layers + self.num_blocks // 2) // self.num_blocks for n in range(self.num_blocks + 1)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SpaceConfig":
        return cls(**d)


@dataclass(frozen=True, order=True)
class BlockPath:
    """One block's architecture: a hidden size and its layers' ops; printed as ``256:mha,ffn,sep3,identity``."""

    hidden: int
    ops: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.hidden}:{','.join(self.ops)}"

    @classmethod
    def parse(cls, text: str) -> "BlockPath":
        try:
            hidden, ops = text.strip().split(":")
            path = cls(int(hidden), tuple(o.strip() for o in ops.split(",")))
        except ValueError:
            raise BertnasError(f"bad block path {text!r}: expected HIDDEN:op,op,... e.g. 256:mha,ffn") from None
        unknown = [o for o in path.ops if o not in OPS]
        if unknown:
            raise BertnasError(f"bad block path {text!r}: unknown ops {unknown}; known: {', '.join(OPS)}")
        depth = path.depth
        if any(o == IDENTITY for o in path.ops[:depth]):
            raise BertnasError(f"bad block path {text!r}: identity is only allowed at the block's tail")
        return path

    @property
    def depth(self) -> int:
        """Layers before the identity tail."""
        n = len(self.ops)
        while n and self.ops[n - 1] == IDENTITY:
            n -= 1
        return n


@dataclass(frozen=True)
class Architecture:
    """A whole student: embedding size and one path per block; printed ``E=128 | 256:mha,ffn | ...``."""

    embedding_size: int
    blocks: tuple[BlockPath, ...]

    def __str__(self) -> str:
        return " | ".join([f"E={self.embedding_size}"] + [str(b) for b in self.blocks])

    @classmethod
    def parse(cls, text: str) -> "Architecture":
        parts = [p.strip() for p in text.split("|")]
        if not parts[0].startswith("E=") or len(parts) < 2:
            raise BertnasError(f"bad architecture {text!r}: expected 'E=SIZE | HIDDEN:op,op | ...'")
        try:
            emb = int(parts[0][2:])
        except ValueError:
            raise BertnasError(f"bad architecture {text!r}: embedding size {parts[0][2:]!r} is not a number") from None
        return cls(emb, tuple(BlockPath.parse(p) for p in parts[1:]))


def enumerate_paths(space: SpaceConfig) -> list[BlockPath]:
    """Every path of one block: a hidden size, ``d >= min_depth`` searchable ops, then identities."""
    paths = []
    for hidden in space.hidden_sizes:
        for depth in range(space.min_depth, space.layers_per_block + 1):
            for ops in itertools.product(space.ops, repeat=depth):
                paths.append(BlockPath(hidden, tuple(ops) + (IDENTITY,) * (space.layers_per_block - depth)))
    return paths


def _key(hidden: int) -> str:
    return str(hidden)


class Supernet(nn.Module):
    """All blocks' candidate ops and adapters; :meth:`run_block` runs one sampled path of one block."""

    def __init__(self, space: SpaceConfig) -> None:
        super().__init__()
        self.space = space.validate()
        t = space.teacher_hidden
        self.blocks = nn.ModuleList()
        for _ in range(space.num_blocks):
            block = nn.Module()
            block.layers = nn.ModuleList(
                nn.ModuleDict({_key(h): nn.ModuleDict({op: create_op(op, h, space.dropout) for op in space.ops})
                               for h in space.hidden_sizes})
                for _ in range(space.layers_per_block)
            )
            block.adapt_in = nn.ModuleDict({_key(h): nn.Linear(t, h) for h in space.hidden_sizes})
            block.adapt_out = nn.ModuleDict({_key(h): nn.Linear(h, t) for h in space.hidden_sizes})
            self.blocks.append(block)

    def op(self, block: int, layer: int, hidden: int, name: str) -> nn.Module:
        return self.blocks[block].layers[layer][_key(hidden)][name]

    def run_block(self, block: int, path: BlockPath, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher-size input (B, L, T) -> the path's layers at its hidden size -> teacher-size output (B, L, T)."""
        b = self.blocks[block]
        h = b.adapt_in[_key(path.hidden)](x)  # (B, L, C)
        for layer, name in enumerate(path.ops[: path.depth]):
            h = self.op(block, layer, path.hidden, name)(h, mask)
        return b.adapt_out[_key(path.hidden)](h)

    def path_modules(self, block: int, path: BlockPath) -> list[nn.Module]:
        return [self.op(block, layer, path.hidden, name) for layer, name in enumerate(path.ops[: path.depth])]


def op_params(name: str, hidden: int) -> int:
    """Parameters of one op at one hidden size (closed form, checked against the modules in tests)."""
    c = hidden
    if name == "mha":
        return 4 * c * c + 4 * c + 2 * c
    if name == "ffn":
        return 8 * c * c + 5 * c + 2 * c
    if name.startswith("sep"):
        k = int(name[3:])
        return 2 * (c * k + c + c * c + c + 2 * c)
    if name == IDENTITY:
        return 0
    raise ValueError(f"unknown op {name!r}")


def path_params(path: BlockPath) -> int:
    """Parameters of a block's layers (what bins are cut by; adapters are counted in the whole model)."""
    return sum(op_params(op, path.hidden) for op in path.ops)


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def save_space(space: SpaceConfig, path) -> None:
    from ..utils import write_json

    write_json(path, space.to_dict())


def load_space(path) -> SpaceConfig:
    from ..utils import read_json

    return SpaceConfig.from_dict(read_json(path)).validate()


__all__ = ["OPS", "LAYER_OPS", "IDENTITY", "SpaceConfig", "BlockPath", "Architecture", "Supernet", "create_op",
           "enumerate_paths", "op_params", "path_params", "linear_params", "num_heads"]
