"""funasr's ERes2NetV2 run with per-utterance lengths, so that padding cannot leak.

Zero padding in a batch changes funasr's embeddings: the 3x3 convolutions near the end
of an utterance see the padded frames (which are no longer zero after batch norm), and
the statistics pooling averages over them. :class:`MaskedERes2NetV2` zeroes the padded
frames before every time-mixing convolution, exactly as that convolution's own zero
padding would at the true end, and pools over the valid frames only. Every other
operation (1x1 convolutions, batch norm in eval mode, activations, AFF fusion) is
pointwise in time, so an utterance's embedding is the same alone or in a padded batch.

This module imports torch; import it lazily from light modules.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from speechloop.errors import ModelUnavailable


def mask_time(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the frames at or beyond each row's length (time is the last axis of 4-D x)."""
    steps = torch.arange(x.shape[-1], device=x.device)
    keep = (steps.unsqueeze(0) < lengths.unsqueeze(1)).to(x.dtype)
    return x * keep.unsqueeze(1).unsqueeze(1)


def halve(lengths: torch.Tensor) -> torch.Tensor:
    """Valid length after a stride-2 convolution with padding 1: ceil(L / 2)."""
    return torch.div(lengths + 1, 2, rounding_mode="floor")


def block_forward(
    block: Any, x: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ERes2NetV2 basic block (plain or AFF) with padding zeroed before 3x3 convs."""
    out = block.relu(block.bn1(block.conv1(x)))
    if block.stride != 1:
        lengths = halve(lengths)
    spx = torch.split(out, block.width, 1)
    fuse = getattr(block, "fuse_models", None)
    pieces = []
    sp = spx[0]
    for i in range(block.nums):
        if i > 0:
            sp = fuse[i - 1](sp, spx[i]) if fuse is not None else sp + spx[i]
        sp = block.relu(block.bns[i](block.convs[i](mask_time(sp, lengths))))
        pieces.append(sp)
    out = block.bn3(block.conv3(torch.cat(pieces, 1)))
    out = block.relu(out + block.shortcut(x))
    return out, lengths


def layer_forward(
    layer: Any, x: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A stage (sequence of blocks), tracking the valid lengths."""
    for block in layer:
        x, lengths = block_forward(block, x, lengths)
    return x, lengths


def masked_stats(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """TSTP (mean and unbiased std over time, as funasr) over the valid frames only."""
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    steps = torch.arange(flat.shape[-1], device=x.device)
    keep = (steps.unsqueeze(0) < lengths.unsqueeze(1)).to(x.dtype).unsqueeze(1)
    count = lengths.to(x.dtype).unsqueeze(1)
    mean = (flat * keep).sum(-1) / count
    centred = (flat - mean.unsqueeze(-1)) * keep
    var = (centred * centred).sum(-1) / torch.clamp(count - 1.0, min=1.0)
    return torch.cat((mean, torch.sqrt(var + 1e-8)), 1)


class MaskedERes2NetV2(torch.nn.Module):
    """Length-aware forward over funasr's ERes2NetV2 (its parameters, unchanged).

    ``forward(feats (B, T, F), lengths (B,)) -> (B, E)``. With every length equal to T it
    computes exactly ``ERes2NetV2.forward``. Only TSTP pooling (the published one).
    """

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        if type(network.pool).__name__ != "TSTP":
            raise ModelUnavailable(
                f"length-aware pooling supports TSTP only, not {type(network.pool).__name__}"
            )
        self.net = network

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Embeddings of a padded batch of fbank features with their frame counts."""
        net: Any = self.net
        lengths = lengths.to(torch.int64)
        x = feats.permute(0, 2, 1).unsqueeze(1)
        x = F.relu(net.bn1(net.conv1(mask_time(x, lengths))))
        out1, len1 = layer_forward(net.layer1, x, lengths)
        out2, len2 = layer_forward(net.layer2, out1, len1)
        out3, len3 = layer_forward(net.layer3, out2, len2)
        out4, len4 = layer_forward(net.layer4, out3, len3)
        out3_ds = net.layer3_ds(mask_time(out3, len3))
        stats = masked_stats(net.fuse34(out4, out3_ds), len4)
        embed: torch.Tensor = net.seg_1(stats)
        if net.two_emb_layer:
            embed = net.seg_2(net.seg_bn_1(F.relu(embed)))
        return embed
