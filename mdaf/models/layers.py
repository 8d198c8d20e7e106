"""Building blocks shared by MDAF and the baselines: MLPs and the Mamba4Rec sequence encoder."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mdaf_kernels.nn import Mamba

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "leaky_relu": nn.LeakyReLU}


class MLP(nn.Sequential):
    """``in_dim -> hidden... -> out_dim``: Linear, activation and dropout after each hidden layer.

    With ``out_dim=None`` the last hidden layer is the output (activation and dropout included).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int | None = None, *,
                 activation: str = "relu", dropout: float = 0.0):
        layers: list[nn.Module] = []
        width = in_dim
        for size in hidden:
            layers += [nn.Linear(width, size), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = size
        if out_dim is not None:
            layers.append(nn.Linear(width, out_dim))
            width = out_dim
        super().__init__(*layers)
        self.out_dim = width


class PositionwiseFeedForward(nn.Module):
    """SASRec/Mamba4Rec feed-forward: ``LayerNorm(x + Dropout(W2 Dropout(GELU(W1 x))))``."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(hidden, dim)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        y = self.dropout(self.w2(self.dropout(self.activation(self.w1(x)))))
        return self.norm(x + y)


class MambaLayer(nn.Module):
    """One Mamba4Rec layer: ``LayerNorm(x + Dropout(Mamba(x)))`` then the feed-forward.

    The Mamba block scans over time (a causal selective state space), so its output at a position
    depends on the order of everything before it; it is not a pooling.
    """

    def __init__(self, dim: int, *, d_state: int, d_conv: int, expand: int, ffn_mult: int, dropout: float):
        super().__init__()
        self.mamba = Mamba(dim, d_state=d_state, d_conv=d_conv, expand=expand)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = PositionwiseFeedForward(dim, ffn_mult * dim, dropout)

    def forward(self, x):
        return self.ffn(self.norm(x + self.dropout(self.mamba(x))))


class SequenceEncoder(nn.Module):
    """Mamba4Rec over a right-padded (B, L, D) sequence: Dropout, LayerNorm, then Mamba layers.

    Returns (B, L, D) states; with right padding the states at valid positions never read a pad.
    """

    def __init__(self, dim: int, *, num_layers: int, d_state: int, d_conv: int, expand: int,
                 ffn_mult: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            MambaLayer(dim, d_state=d_state, d_conv=d_conv, expand=expand, ffn_mult=ffn_mult, dropout=dropout)
            for _ in range(num_layers)
        )

    def forward(self, x):
        x = self.norm(self.dropout(x))
        for layer in self.layers:
            x = layer(x)
        return x
