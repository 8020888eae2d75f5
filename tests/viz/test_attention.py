"""minitune attention shows transformers' probabilities, as heat maps of one head or a layer."""
from pathlib import Path

import numpy as np
import pytest

from minitune.cli import main

pytest.importorskip("matplotlib")
REF = np.load(Path(__file__).resolve().parents[1] / "fixtures" / "attention_probs.npz")
TEXT = str(REF["minilm/texts"][0])        # the longer sentence: no padding in its row


@pytest.fixture(scope="module")
def minilm():
    from minitune import Tokenizer
    from minitune.models import BertModel
    try:
        return BertModel.from_pretrained("all-MiniLM-L6-v2"), \
            Tokenizer.from_pretrained("all-MiniLM-L6-v2")
    except ValueError as e:
        pytest.skip(f"all-MiniLM-L6-v2 is not installed ({e})")


def test_the_probabilities_drawn_are_transformers(minilm):
    from minitune.viz.attention import attention_probabilities
    tokens, probs = attention_probabilities(*minilm, TEXT)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "cat" in tokens
    assert probs.shape == (6, 12, len(tokens), len(tokens))
    np.testing.assert_allclose(probs, REF["minilm/attentions"][:, 0], rtol=0, atol=1e-5)


def test_cli_writes_one_head(minilm, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["attention", "--model", "all-MiniLM-L6-v2", TEXT, "--layer", "5",
                 "--head", "11"]) == 0
    assert capsys.readouterr().out.split() == ["attention_L5_H11.png"]
    assert (tmp_path / "attention_L5_H11.png").read_bytes()[:4] == b"\x89PNG"


def test_a_grid_of_heads_and_the_valid_ranges(tmp_path):
    from minitune.viz.attention import plot_attention
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, 5, 3))   # (L, NH, T, T)
    out = plot_attention(["[CLS]", "hi", "[SEP]"], probs, tmp_path / "grid.png", layer=1)
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"layers 0\.\.1"):
        plot_attention(["a"] * 3, probs, tmp_path / "x.png", layer=2)
    with pytest.raises(ValueError, match=r"heads 0\.\.4"):
        plot_attention(["a"] * 3, probs, tmp_path / "x.png", layer=0, head=5)
