"""Ranger (RAdam + Lookahead + gradient centralization), the optimizer of pSp / e4e / ReStyle.

Follows the equations of their ``training/ranger.py`` (lessw2020's Ranger, version 20.4.11) step by step. Our own
rather than ``pytorch_optimizer.Ranger`` because the official one keeps ``state['step']`` per parameter and skips
parameters without a gradient: a layer that first gets gradients late (e4e's progressive style heads, from step
20,000 on) starts its own RAdam warm-up (SGD-with-momentum steps while N_sma <= threshold) and its own Lookahead
cadence at its first update, where a per-group counter would hand it a full rectified step at once.

Bit-exact with the official for one param group (fp32 and bf16 params). Differences outside that case: the step
size is computed per parameter (the official caches it in ``radam_buffer`` keyed by the step alone, so a second group
with other betas gets the first group's values); ``alpha``, ``k`` and the threshold are read per group; ``use_gc=False``
turns centralization off (the official ignores the flag); the closure is evaluated (the official ignores it, Lightning's
automatic optimisation needs it); ``p.grad`` is left untouched (the official centralizes fp32 grads in place); after
``load_state_dict`` the moments stay fp32 for bf16 params (torch would cast them to the param dtype); float64 params
are updated in float64 (the official casts every param to fp32; the conformance tests run in float64).
"""

from __future__ import annotations

import math

import torch


class Ranger(torch.optim.Optimizer):
    def __init__(
        self,
        params,
        lr: float = 1e-3,  # Learning rate.
        alpha: float = 0.5,  # Lookahead: slow weights move this fraction towards the fast weights.
        k: int = 6,  # Lookahead: sync every k of a parameter's own steps.
        n_sma_threshold: float = 5,  # RAdam: rectified steps once the SMA length exceeds this, SGD-momentum before.
        betas: tuple[float, float] = (0.95, 0.999),  # Adam moment decays (the official beta1 is 0.95).
        eps: float = 1e-5,  # Added to sqrt(exp_avg_sq) in rectified steps.
        weight_decay: float = 0.0,  # Decoupled: p -= weight_decay * lr * p before each update.
        use_gc: bool = True,  # Gradient centralization on or off.
        gc_conv_only: bool = False,  # Centralize conv weights only (dim > 3) instead of conv + linear (dim > 1).
    ):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Invalid slow update rate: {alpha}")
        if not k >= 1:
            raise ValueError(f"Invalid lookahead steps: {k}")
        if not lr > 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps > 0:
            raise ValueError(f"Invalid eps: {eps}")
        defaults = dict(lr=lr, alpha=alpha, k=k, n_sma_threshold=n_sma_threshold, betas=tuple(betas), eps=eps,
                        weight_decay=weight_decay, use_gc=use_gc, gc_conv_only=gc_conv_only)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, gc_dim = group["lr"], 3 if group["gc_conv_only"] else 1
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Ranger does not support sparse gradients")
                dt = torch.promote_types(p.dtype, torch.float32)  # fp32 maths and state for low-precision params
                grad, p32 = p.grad.to(dt), p.to(dt)
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p32)
                    state["exp_avg_sq"] = torch.zeros_like(p32)
                    state["slow_buffer"] = p.clone()  # in the param's dtype, like the official
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                if group["use_gc"] and grad.dim() > gc_dim:
                    grad = grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)
                state["step"] += 1
                t = state["step"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)

                beta2_t = beta2**t
                n_sma_max = 2 / (1 - beta2) - 1
                n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t)
                rectified = n_sma > group["n_sma_threshold"]
                if rectified:
                    r = ((1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max
                         / (n_sma_max - 2))
                    step_size = math.sqrt(r) / (1 - beta1**t)
                else:
                    step_size = 1.0 / (1 - beta1**t)

                if group["weight_decay"] != 0:
                    p32.add_(p32, alpha=-group["weight_decay"] * lr)
                if rectified:
                    p32.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-step_size * lr)
                else:
                    p32.add_(exp_avg, alpha=-step_size * lr)
                if p32 is not p:
                    p.copy_(p32)

                if t % group["k"] == 0:  # Lookahead, on this parameter's own step count
                    slow = state["slow_buffer"]
                    slow.add_(p - slow, alpha=group["alpha"])
                    p.copy_(slow)
        return loss

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        # torch casts floating state to the param dtype; keep the saved fp32 moments exact for low-precision params.
        saved = state_dict["state"]
        for saved_group, group in zip(state_dict["param_groups"], self.param_groups):
            for pid, p in zip(saved_group["params"], group["params"]):
                for key in ("exp_avg", "exp_avg_sq"):
                    if pid in saved and key in saved[pid]:
                        dt = torch.promote_types(p.dtype, torch.float32)
                        self.state[p][key] = saved[pid][key].to(device=p.device, dtype=dt)
