"""The sampling loop every stage shares: classifier-free guidance, windows, callbacks, progress.

A stage describes one UNet call by a :class:`Conditioning` (text context, extra input channels,
class labels); :func:`denoise` runs the scheduler's steps over it. With ``guidance_scale > 1`` and
a negative context, the conditional and unconditional branches run as one batch of two and are
combined as ``uncond + scale * (cond - uncond)``; with ``guidance_scale <= 1`` only the
conditional branch runs (half the work).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from cascade.pipelines.windows import Window, WindowPlan, blend_windows

#: ``callback_on_step_end(pipeline, step_index, timestep, {"latents": ...})`` may return a dict
#: whose ``"latents"`` replaces the current latents (diffusers' convention).
StepCallback = Callable[[Any, int, torch.Tensor, dict[str, torch.Tensor]], dict[str, torch.Tensor] | None]


@dataclass
class Conditioning:
    """What the UNet takes besides the noisy latents, for the conditional branch and (``None``
    when guidance is off) the unconditional one. ``added_cond`` is ``(B, C', F, H, W)`` and is
    windowed with the latents; ``class_labels`` is ``(B,)``."""

    context: torch.Tensor
    negative_context: torch.Tensor | None = None
    added_cond: torch.Tensor | None = None
    class_labels: torch.Tensor | None = None


@dataclass
class LoopSettings:
    num_inference_steps: int
    guidance_scale: float
    generator: torch.Generator | None = None
    eta: float = 0.0
    windows: WindowPlan = WindowPlan()
    callback_on_step_end: StepCallback | None = None
    progress: dict[str, Any] | None = None  # tqdm keywords; ``{"disable": True}`` silences


def uses_guidance(guidance_scale: float) -> bool:
    return guidance_scale > 1.0


def denoise(
    unet: torch.nn.Module,
    scheduler: Any,
    latents: torch.Tensor,
    conditioning: Conditioning,
    settings: LoopSettings,
    *,
    pipeline: Any = None,
    stage: str = "denoise",
) -> torch.Tensor:
    """Run ``settings.num_inference_steps`` steps from the initial noise ``latents`` (float32,
    ``(B, C, F, H, W)``, unscaled standard normal); returns the final latents (float32)."""
    device = latents.device
    scheduler.set_timesteps(settings.num_inference_steps, device=device)
    latents = latents * scheduler.init_noise_sigma
    step_kwargs = _step_kwargs(scheduler, settings)
    windows = settings.windows.windows(*latents.shape[2:])
    bar = tqdm(total=len(scheduler.timesteps), desc=stage, **(settings.progress or {}))
    for index, timestep in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(latents, timestep)

        def run(window: Window, model_input: torch.Tensor = model_input, timestep: torch.Tensor = timestep) -> torch.Tensor:
            return _guided_prediction(unet, window.of(model_input), timestep, conditioning, window, settings.guidance_scale)

        prediction = blend_windows(run, windows, latents.shape, device)
        latents = scheduler.step(prediction, timestep, latents, **step_kwargs).prev_sample.float()
        if settings.callback_on_step_end is not None:
            replaced = settings.callback_on_step_end(pipeline, index, timestep, {"latents": latents})
            if replaced and "latents" in replaced:
                latents = replaced["latents"]
        bar.update()
    bar.close()
    return latents


def _guided_prediction(
    unet: torch.nn.Module,
    sample: torch.Tensor,
    timestep: torch.Tensor,
    conditioning: Conditioning,
    window: Window,
    guidance_scale: float,
) -> torch.Tensor:
    dtype = next(unet.parameters()).dtype
    added = window.of(conditioning.added_cond) if conditioning.added_cond is not None else None
    guided = uses_guidance(guidance_scale) and conditioning.negative_context is not None
    context = conditioning.context
    labels = conditioning.class_labels
    if guided:
        sample = torch.cat([sample, sample])
        context = torch.cat([conditioning.negative_context, context])
        added = torch.cat([added, added]) if added is not None else None
        labels = torch.cat([labels, labels]) if labels is not None else None
    output = unet(
        sample.to(dtype),
        timestep,
        encoder_hidden_states=context.to(dtype),
        added_cond=added.to(dtype) if added is not None else None,
        class_labels=labels,
    ).sample.float()
    if not guided:
        return output
    uncond, cond = output.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def _step_kwargs(scheduler: Any, settings: LoopSettings) -> dict[str, Any]:
    """The keywords this scheduler's ``step`` takes: its generator (DDPM, Euler) and DDIM's eta."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "generator" in accepted:
        kwargs["generator"] = settings.generator
    if "eta" in accepted:
        kwargs["eta"] = settings.eta
    return kwargs
