"""The Rep2Text adapter: last-token hidden state [d_in] -> k soft tokens [k, d_out] in the decoder's embedding space.

Two-layer MLP plus a linear skip path whose contribution is gated per soft token (Rep2Text's "gated skip"). The
output is RMS-normalised and rescaled to the decoder's typical embedding norm, so soft tokens start on the same scale
as real token embeddings (this only fixes the scale; the direction is learned).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor, nn


class Rep2TextAdapter(nn.Module):
    def __init__(self, d_in: int, d_out: int, n_soft_tokens: int, d_hidden: int = 1024, embed_rms: float = 1.0):
        super().__init__()
        self.d_in, self.d_out, self.n_soft_tokens = d_in, d_out, n_soft_tokens
        self.norm = nn.LayerNorm(d_in)
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, n_soft_tokens * d_out)
        self.skip = nn.Linear(d_in, n_soft_tokens * d_out, bias=False)
        self.gate = nn.Linear(d_in, n_soft_tokens)
        nn.init.constant_(self.gate.bias, -1.0)  # skip path starts mostly closed
        self.register_buffer("embed_rms", torch.tensor(float(embed_rms)))

    def forward(self, state_BD: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch k d_out"]:
        if state_BD.ndim != 2 or state_BD.shape[-1] != self.d_in:
            raise ValueError(f"adapter expects states of shape [batch, {self.d_in}], got {tuple(state_BD.shape)}")
        h_BD = self.norm(state_BD)
        mlp_BKE = self.fc2(torch.nn.functional.gelu(self.fc1(h_BD))).view(-1, self.n_soft_tokens, self.d_out)
        skip_BKE = self.skip(h_BD).view(-1, self.n_soft_tokens, self.d_out)
        gate_BK1 = torch.sigmoid(self.gate(h_BD)).unsqueeze(-1)
        soft_BKE = mlp_BKE + gate_BK1 * skip_BKE
        rms_BK1 = soft_BKE.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
        return soft_BKE / rms_BK1 * self.embed_rms
