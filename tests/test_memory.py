"""benchmarks/memory.py: the activation-memory meter, and one real training step's peak for pSp / ReStyle-pSp.

The ReStyle guard: the official trainer calls backward after each of its iterations, so only one iteration's
autograd graph is alive at a time; ReStyle-5's step must therefore peak at about one iteration's activations
(ReStyle-1's, and pSp's at this size), not five.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.memory import ActivationMemoryMeter, measure

BATCH, WIDTH = 256, 512
ACTIVATION = BATCH * WIDTH * 4  # one fp32 [BATCH, WIDTH] tensor


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, WIDTH)
        self.register_buffer("scale", torch.full((WIDTH,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # saved for backward: x (lin1's weight grad), h (tanh's output, lin2's input: one storage), lin2's
        # weight.t() (a view of a Parameter: excluded), y (tanh's output and square's input: one storage), and
        # the buffer (mul by scale saves it: excluded when the module is passed as exclude)
        h = torch.tanh(self.lin1(x))
        y = torch.tanh(self.lin2(h) * self.scale)
        return y.square().sum()


def test_meter_counts_saved_activations_once_and_sees_graphs_freed_by_backward():
    torch.manual_seed(0)
    net = _Toy()
    xs = [torch.randn(BATCH, WIDTH) for _ in range(2)]

    net(xs[0]).backward()
    plain = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    with ActivationMemoryMeter(exclude=[net]) as one:
        net(xs[0]).backward()
    assert one.peak_bytes == 3 * ACTIVATION  # x, h, y: weights, the weight view and the buffer excluded
    assert one.live_bytes == 0 and one.skipped >= 2
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), plain))  # metering changes nothing

    with ActivationMemoryMeter(exclude=[net]) as seq:  # the official ReStyle trainer: backward per iteration
        for x in xs:
            net(x).backward()
    assert seq.peak_bytes == one.peak_bytes and seq.live_bytes == 0

    with ActivationMemoryMeter(exclude=[net]) as summed:  # both graphs alive, then one backward
        sum(net(x) for x in xs).backward()
    assert summed.peak_bytes == 2 * one.peak_bytes and summed.live_bytes == 0

    with ActivationMemoryMeter() as with_buffer:  # without exclude, the buffer's storage is charged
        net(xs[0]).backward()
    assert with_buffer.peak_bytes == one.peak_bytes + net.scale.untyped_storage().nbytes()

    with ActivationMemoryMeter() as dropped:  # a graph freed without backward is released too
        loss = net(xs[0])
        assert dropped.live_bytes > 0
        del loss
    assert dropped.live_bytes == 0


@pytest.fixture(scope="module")
def step_rows() -> dict[str, dict]:
    """One real Lightning training step each (train_step.build_module's modules), small, on CPU."""
    rows = measure(("pSp", "ReStyle-pSp-1", "ReStyle-pSp-5"), device="cpu", resolution=32, batch=2, width=0.0625)
    return {r["method"]: r for r in rows}


def _peaks(rows: dict[str, dict]) -> str:
    return ", ".join(f"{k} {r['activation_peak_mib']:.2f} MiB" for k, r in rows.items())


def test_training_step_is_metered_and_its_graphs_are_freed(step_rows):
    for r in step_rows.values():
        assert r["activation_peak_mib"] > 0 and r["saved_tensors"] > 0
        assert r["activation_live_after_mib"] == 0, "a training step left autograd graphs alive"
    # at this size pSp's and ReStyle's encoders hold comparable activations, so pSp is a fair reference
    ratio = step_rows["ReStyle-pSp-1"]["activation_peak_mib"] / step_rows["pSp"]["activation_peak_mib"]
    assert 0.75 < ratio < 1.33, _peaks(step_rows)


def test_restyle5_training_step_peak_activation_within_1_5x_of_psp(step_rows):
    ratio = step_rows["ReStyle-pSp-5"]["ratio_to_pSp"]
    assert ratio <= 1.5, f"ReStyle-5 / pSp = {ratio:.2f} ({_peaks(step_rows)}): backward once per iteration"


def test_restyle5_training_step_peak_activation_within_1_5x_of_restyle1(step_rows):
    ratio = step_rows["ReStyle-pSp-5"]["ratio_to_ReStyle-pSp-1"]
    assert ratio <= 1.5, f"ReStyle-5 / ReStyle-1 = {ratio:.2f} ({_peaks(step_rows)}): backward once per iteration"
