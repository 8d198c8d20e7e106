"""Building blocks shared by MDAF and the baselines: MLPs and the Mamba4Rec sequence encoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mdaf.models.inputs import gather_last
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

    ``forward(x, lengths=None, *, last_only=False)``: x (B, L, D) right-padded to ``lengths`` ->
    (B, L, D), or with ``last_only`` (B, D), the output at position ``lengths - 1`` only: the block
    reads out that position, and the residual, LayerNorm and feed-forward run on it alone.
    """

    def __init__(self, dim: int, *, d_state: int, d_conv: int, expand: int, ffn_mult: int, dropout: float):
        super().__init__()
        self.mamba = Mamba(dim, d_state=d_state, d_conv=d_conv, expand=expand)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = PositionwiseFeedForward(dim, ffn_mult * dim, dropout)

    def forward(self, x, lengths=None, *, last_only: bool = False):
        y = self.mamba(x, lengths=lengths, last_only=last_only)
        if last_only:
            x = gather_last(x, lengths)  # the residual at the position read
        return self.ffn(self.norm(x + self.dropout(y)))


class SequenceEncoder(nn.Module):
    """Mamba4Rec over a right-padded (B, L, D) sequence: Dropout, LayerNorm, then Mamba layers.

    ``forward(x, lengths=None, *, last_only=False)`` returns (B, L, D) states; with right padding the
    states at valid positions never read a pad, and with ``lengths`` the scans stop at each row's
    length. With ``last_only`` it returns (B, D): the state at position ``lengths - 1`` of each row
    (zeros where ``lengths == 0``), exactly ``gather_last(forward(x), lengths)`` but computing that one
    position alone in the last layer (earlier layers feed every position of the next one, so they
    run in full).

    ``last_states(x, lengths)`` is what the models read: the last-only path, or the full path then
    ``gather_last`` when ``shorten_last_layer`` is False (the reference the tests compare with).
    """

    shorten_last_layer: bool = True

    def __init__(self, dim: int, *, num_layers: int, d_state: int, d_conv: int, expand: int,
                 ffn_mult: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            MambaLayer(dim, d_state=d_state, d_conv=d_conv, expand=expand, ffn_mult=ffn_mult, dropout=dropout)
            for _ in range(num_layers)
        )

    def forward(self, x, lengths=None, *, last_only: bool = False):
        if last_only and lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        x = self.norm(self.dropout(x))
        for layer in self.layers[:-1]:
            x = layer(x, lengths)
        x = self.layers[-1](x, lengths, last_only=last_only)
        # An empty row reads zeros, as gather_last gives, not the feed-forward of a zero input.
        return torch.where((lengths > 0)[:, None], x, torch.zeros_like(x)) if last_only else x

    def last_states(self, x, lengths):
        """(B, D): the state at position ``lengths - 1`` of each row of (B, L, D) ``x``; zeros when empty."""
        if self.shorten_last_layer:
            return self(x, lengths, last_only=True)
        return gather_last(self(x), lengths)
