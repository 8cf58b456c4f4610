"""AUTOMATIC1111 sampler names -> diffusers schedulers."""

from __future__ import annotations

import diffusers

from desktop.core.samplers import AUTOMATIC, BETA, EXPONENTIAL, KARRAS, SAMPLERS, split_sampler_name

# sampler -> (scheduler class name, extra config)
_SCHEDULERS: dict[str, tuple[str, dict]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
}
assert _SCHEDULERS.keys() == SAMPLERS.keys()

_SCHEDULE_FLAGS = {KARRAS: "use_karras_sigmas", EXPONENTIAL: "use_exponential_sigmas", BETA: "use_beta_sigmas"}


def make_scheduler(base_config: dict, sampler: str, schedule: str = AUTOMATIC, seeds: list[int] | None = None):
    """A new scheduler for `sampler`, keeping the model's training settings.

    base_config is the model's own scheduler config (beta schedule, prediction
    type, ...); sigma-schedule flags in it are reset so that "Automatic"
    really means the sampler's default. `seeds` (one per image) seed the
    Brownian noise of DPM++ SDE, which does not draw from the pipeline's
    generator, so image i of a batch equals a single run with its own seed.
    """
    sampler, schedule = split_sampler_name(sampler, schedule)
    class_name, extra = _SCHEDULERS[sampler]
    config = {k: v for k, v in dict(base_config).items() if k not in _SCHEDULE_FLAGS.values()}
    config.update(extra)
    if schedule != AUTOMATIC:
        if schedule not in SAMPLERS[sampler]:
            raise ValueError(f"{sampler} does not support the {schedule} schedule")
        config[_SCHEDULE_FLAGS[schedule]] = True
    if class_name == "DPMSolverSDEScheduler":
        config["noise_sampler_seed"] = list(seeds) if seeds else 0
    return getattr(diffusers, class_name).from_config(config)


# The flow-matching families (desktop/core/families.py FLOW_SAMPLERS): sampler -> (scheduler class, extra config).
# Only what every flow pipeline runs: they all pass `sigmas=` and `mu=` to set_timesteps and call scale_noise for
# img2img and inpaint, which FlowMatchHeunDiscreteScheduler (no sigmas, no mu), DPMSolverMultistepScheduler (no
# sigmas, no scale_noise) and UniPCMultistepScheduler (no scale_noise) do not all take.
_FLOW_SCHEDULERS: dict[str, tuple[str, dict]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
}


def make_flow_scheduler(base_config: dict, sampler: str, schedule: str = AUTOMATIC, shift: float = 0.0):
    """A new flow-matching scheduler for `sampler` (a name in _FLOW_SCHEDULERS), keeping the model's settings.

    `shift` > 0 replaces the model's shift and turns its dynamic (resolution-dependent) shifting off; 0 keeps the
    model's own. Karras, Exponential and Beta respace the shifted sigmas as FlowMatchEulerDiscreteScheduler does.
    """
    sampler, schedule = split_sampler_name(sampler, schedule)
    if sampler not in _FLOW_SCHEDULERS:
        raise ValueError(f"{sampler} has no flow-matching scheduler; use one of {', '.join(_FLOW_SCHEDULERS)}")
    class_name, extra = _FLOW_SCHEDULERS[sampler]
    config = {k: v for k, v in dict(base_config).items() if k not in _SCHEDULE_FLAGS.values()}
    config.update(extra)
    if shift > 0:
        config.update(shift=float(shift), use_dynamic_shifting=False)
    if schedule != AUTOMATIC:
        if schedule not in SAMPLERS[sampler]:
            raise ValueError(f"{sampler} does not support the {schedule} schedule")
        config[_SCHEDULE_FLAGS[schedule]] = True
    return getattr(diffusers, class_name).from_config(config)
