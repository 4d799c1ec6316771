"""plot_architecture writes a readable PNG, with and without the probability panels."""
from __future__ import annotations

import matplotlib.image as mpimg
import pytest

from bertnas.adabert.genotype import EDGES, NUM_EDGES, Genotype
from bertnas.adabert.ops import PRIMITIVES
from bertnas.adabert.plot import plot_architecture
from bertnas.errors import BertnasError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def genotype() -> Genotype:
    return Genotype(
        edges=((0, 0, "conv_3"), (0, 1, "max_pool_3"), (1, 0, "skip_connect"), (1, 2, "conv_5"),
               (2, 1, "dil_conv_3"), (2, 3, "avg_pool_3")),
        depth=3,
    )


def _check_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_plot_cell_only(tmp_path, genotype):
    out = plot_architecture(genotype, tmp_path / "arch.png")
    assert out == tmp_path / "arch.png"
    _check_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["arch.png"]  # no temp file left behind


def test_plot_with_probability_panels_is_wider(tmp_path, genotype):
    op_probs = [[1.0 / len(PRIMITIVES)] * len(PRIMITIVES) for _ in EDGES]
    alone = _check_png(plot_architecture(genotype, tmp_path / "a.png"))
    full = _check_png(plot_architecture(genotype, str(tmp_path / "sub" / "b.png"), op_probs=op_probs,
                                        depth_probs=[0.1, 0.2, 0.5, 0.2], title="test run"))
    assert full.shape[1] > alone.shape[1]
    depth_only = _check_png(plot_architecture(genotype, tmp_path / "c.png", depth_probs=[0.2, 0.3, 0.5]))
    assert alone.shape[1] < depth_only.shape[1] < full.shape[1]


def test_plot_rejects_bad_probs(tmp_path, genotype):
    with pytest.raises(BertnasError, match="op_probs"):
        plot_architecture(genotype, tmp_path / "x.png", op_probs=[[0.1] * len(PRIMITIVES)] * (NUM_EDGES - 1))
    with pytest.raises(BertnasError, match="depth_probs"):
        plot_architecture(genotype, tmp_path / "x.png", depth_probs=[0.5, 0.5])
    assert not (tmp_path / "x.png").exists()
