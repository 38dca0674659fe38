"""The EMA: its update rule, its state, and the reassembly of ZeRO-3 partitions."""

from __future__ import annotations

import pytest
import torch

from training.ema import ShardedEMA, consolidate_ema


def test_update_rule_start_step_and_frozen_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    model[1].requires_grad_(False)
    ema = ShardedEMA(model, decay=0.9, rank=0, world_size=1, start_step=2)
    assert set(ema.shadow) == {"0.weight", "0.bias"}  # frozen weights are their own average
    history = []
    for step in range(5):
        with torch.no_grad():
            model[0].weight.add_(1.0)
        history.append(model[0].weight.detach().clone())
        ema.update(step)
    expected = history[1]  # steps 0 and 1 (< start_step) copy the weights
    for step in (2, 3, 4):
        expected = 0.9 * expected + 0.1 * history[step]
    assert torch.allclose(ema.shadow["0.weight"].view(2, 3), expected)

    state = ema.state_dict()
    other = ShardedEMA(model, decay=0.9, rank=0, world_size=1)
    other.load_state_dict([state])
    assert torch.equal(other.shadow["0.weight"], ema.shadow["0.weight"])
    full = consolidate_ema([state])
    assert full["0.weight"].shape == (2, 3) and torch.allclose(full["0.weight"], expected.view(2, 3))


def test_zero3_partitions_are_reassembled_in_rank_order():
    weight = torch.arange(15, dtype=torch.float32).view(3, 5)
    flat = torch.cat([weight.flatten(), torch.zeros(1)])  # padded to a multiple of the world size
    states = [
        {"rank": r, "world_size": 2, "zero3": True, "decay": 0.9,
         "meta": {"w": {"shape": [3, 5], "numel": 15}}, "shadow": {"w": flat[8 * r : 8 * (r + 1)].clone()}}
        for r in (1, 0)
    ]  # fmt: skip
    assert torch.equal(consolidate_ema(states)["w"], weight)
    with pytest.raises(RuntimeError, match="expected 0..2"):
        consolidate_ema([{**s, "world_size": 3} for s in states])  # a partition missing


def test_load_refuses_a_state_of_other_parameters():
    model = torch.nn.Linear(3, 2)
    ema = ShardedEMA(model, decay=0.5, rank=0, world_size=1)
    state = ema.state_dict()
    state["shadow"] = {"other": torch.zeros(1)}
    with pytest.raises(RuntimeError, match="other parameters"):
        ema.load_state_dict([state])
