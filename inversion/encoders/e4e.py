"""e4e encoder (Tov et al., "Designing an Encoder for StyleGAN Image Manipulation", SIGGRAPH 2021).

:class:`Encoder4Editing` has exactly the layers of pSp's :class:`~inversion.encoders.psp.GradualStyleEncoder`
(same ``state_dict`` keys; ``e4e_ffhq_encode.pt``'s ``encoder.<key>`` entries load strictly after stripping
the prefix), but predicts one base code ``w`` from the coarsest head (``styles.0`` on ``c3``) and per-layer
offsets: ``ws[:, 0] = w`` and ``ws[:, i] = w + delta_i`` with ``delta_i = styles[i](features)`` for
``1 <= i <= progressive_stage``; layers beyond the stage get ``w`` unchanged (their deltas are not computed).

Progressive stages (e4e's ``ProgressiveStage`` enum, here plain ints): ``0`` = ``WTraining`` (a single ``w``
for all layers), ``k`` = ``Delta{k}Training`` (deltas ``1..k`` active), ``num_ws`` = ``Inference`` (the
official default; all deltas active). Stages ``num_ws - 1`` and ``num_ws`` give identical outputs; e4e's
trainer uses ``Inference`` to mean "progressive schedule finished" and skips the delta regulariser there.
The delta of layer ``i`` is ``ws[:, i] - ws[:, 0]``.
"""

from __future__ import annotations

from typing import Any

import torch

from .psp import GradualStyleEncoder, upsample_add

__all__ = ["Encoder4Editing", "ProgressiveStageMixin"]


class ProgressiveStageMixin:
    """``progressive_stage`` of e4e-style encoders: an int in ``[0, num_ws]`` (``num_ws`` = Inference).

    Accepts ints or enum members with an int ``.value`` (e.g. e4e's / ReStyle's ``ProgressiveStage``).
    """

    num_ws: int
    _progressive_stage: int

    def __init__(
        self,
        *args: Any,  # The encoder's own arguments (num_ws, w_dim, in_channels, input_size, ...).
        progressive_stage: int | None = None,  # Initial stage in [0, num_ws]; None = num_ws (Inference).
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.progressive_stage = self.num_ws if progressive_stage is None else progressive_stage

    @property
    def progressive_stage(self) -> int:
        return self._progressive_stage

    @progressive_stage.setter
    def progressive_stage(self, stage: Any) -> None:
        value = getattr(stage, "value", stage)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= self.num_ws:
            raise ValueError(f"progressive_stage must be an int in [0, {self.num_ws}], got {stage!r}")
        self._progressive_stage = value

    def set_progressive_stage(self, stage: Any) -> None:
        """Same as assigning ``progressive_stage`` (the official method name)."""
        self.progressive_stage = stage

    @property
    def num_active_deltas(self) -> int:
        """Number of per-layer deltas added at the current stage (``min(stage, num_ws - 1)``)."""
        return min(self._progressive_stage, self.num_ws - 1)


class Encoder4Editing(ProgressiveStageMixin, GradualStyleEncoder):
    """e4e encoder: images [N, in_channels, input_size, input_size] -> ws [N, num_ws, w_dim].

    With defaults this is the official 18-style FFHQ encoder (267,136,704 parameters, same as pSp's).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        c1, c2, c3 = self._pyramid_inputs(x)
        w = self.styles[0](c3)
        ws = [w]
        features = c3
        p2 = c3
        for i in range(1, self.num_active_deltas + 1):
            if i == self.coarse_ind:
                p2 = features = upsample_add(c3, self.latlayer1(c2))
            elif i == self.middle_ind:
                features = upsample_add(p2, self.latlayer2(c1))
            ws.append(w + self.styles[i](features))
        ws += [w] * (self.num_ws - len(ws))
        return self._check_output(torch.stack(ws, dim=1), x)
