"""Reference-view selection (the view that defines the window's world frame).

Strategies as in the official code: "first", "middle", "saddle_balanced" (the
view whose mean similarity, norm and variance of its class token are closest to
the middle of their ranges) and "saddle_sim_range" (largest spread of
similarities to the other views). The chosen view moves to position 0, the
others keep their relative order.
"""

from __future__ import annotations

import torch

REF_STRATEGIES = ("first", "middle", "saddle_balanced", "saddle_sim_range")


def select_reference(selector: torch.Tensor, strategy: str = "saddle_balanced") -> torch.Tensor:
    """selector (B, S, D) class tokens -> reference index per batch item (B,) long."""
    B, S, _ = selector.shape
    dev = selector.device
    if strategy not in REF_STRATEGIES:
        raise ValueError(f"unknown reference strategy {strategy!r}; one of {REF_STRATEGIES}")
    if S <= 1 or strategy == "first":
        return torch.zeros(B, dtype=torch.long, device=dev)
    if strategy == "middle":
        return torch.full((B,), S // 2, dtype=torch.long, device=dev)
    tok = selector.float()
    unit = tok / tok.norm(dim=-1, keepdim=True)
    sim = unit @ unit.transpose(1, 2) - torch.eye(S, device=dev)[None]
    if strategy == "saddle_sim_range":
        return (sim.max(-1).values - sim.min(-1).values).argmax(1)

    def unit_range(m):
        lo, hi = m.min(1, keepdim=True).values, m.max(1, keepdim=True).values
        return (m - lo) / (hi - lo + 1e-8)

    score = ((unit_range(sim.sum(-1) / (S - 1)) - 0.5).abs()
             + (unit_range(tok.norm(dim=-1)) - 0.5).abs()
             + (unit_range(unit.var(dim=-1)) - 0.5).abs())
    return score.argmin(1)


def reference_order(selector: torch.Tensor, strategy: str = "saddle_balanced") -> torch.Tensor:
    """(B, S) view order with the reference first: order[b, j] = input index at position j."""
    B, S, _ = selector.shape
    ref = select_reference(selector, strategy)[:, None]
    pos = torch.arange(S, device=selector.device)[None].expand(B, S)
    order = torch.where((pos > 0) & (pos <= ref), pos - 1, pos)
    order[:, 0] = ref[:, 0]
    return order
