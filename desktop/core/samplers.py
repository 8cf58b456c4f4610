"""The sampler and schedule names people know from AUTOMATIC1111.

Pure data, so the prompt panel can list them without importing diffusers;
desktop/engine/schedulers.py maps each name to a diffusers scheduler.
"""

from __future__ import annotations

AUTOMATIC = "Automatic"
KARRAS = "Karras"
EXPONENTIAL = "Exponential"
BETA = "Beta"
SGM_UNIFORM = "SGM Uniform"  # A1111's name for evenly spaced timesteps ending at the last one ("trailing")
_SIGMA_SCHEDULES = (KARRAS, EXPONENTIAL, BETA)
_SD_SCHEDULES = (*_SIGMA_SCHEDULES, SGM_UNIFORM)

#: sampler name -> the schedule types it supports (besides Automatic). SGM Uniform is the schedule Lightning,
#: Hyper-SD and the Turbo models want with Euler (their first step at the last training timestep).
SAMPLERS: dict[str, tuple[str, ...]] = {
    "Euler": _SD_SCHEDULES,
    "Euler a": (SGM_UNIFORM,),
    "DPM++ 2M": _SD_SCHEDULES,
    "DPM++ 2M SDE": _SD_SCHEDULES,
    "DPM++ SDE": _SIGMA_SCHEDULES,  # not SGM Uniform: its Brownian tree (torchsde) cannot start at sigma_max
    "DDIM": (SGM_UNIFORM,),
    "UniPC": _SD_SCHEDULES,
    "LMS": _SD_SCHEDULES,
    "Heun": _SD_SCHEDULES,
    "DPM2": _SD_SCHEDULES,
    "DPM2 a": _SD_SCHEDULES,
    # few-step samplers (desktop/core/fewstep.py): for LCM, TCD, Hyper-SD and Lightning models and LoRAs; they
    # place their few timesteps themselves
    "LCM": (),
    "TCD": (),
}
FEW_STEP_SAMPLERS = ("LCM", "TCD")

SCHEDULES = (AUTOMATIC, *_SD_SCHEDULES)
DEFAULT_SAMPLER = "DPM++ 2M"
DEFAULT_SCHEDULE = KARRAS


def split_sampler_name(name: str, schedule: str = AUTOMATIC) -> tuple[str, str]:
    """Normalise a sampler name, splitting a legacy suffix.

    AUTOMATIC1111 before 1.9 wrote the schedule into the sampler name
    ("DPM++ 2M Karras"); later versions write "Sampler: DPM++ 2M, Schedule
    type: Karras". Both map to ("DPM++ 2M", "Karras"). Unknown names raise
    ValueError naming the known ones.
    """
    name = name.strip()
    lowered = {known.lower(): known for known in SAMPLERS}
    if name.lower() in lowered:
        return lowered[name.lower()], schedule
    for suffix in _SIGMA_SCHEDULES:
        base = name[: -len(suffix)].strip()
        if name.lower().endswith(" " + suffix.lower()) and base.lower() in lowered:
            return lowered[base.lower()], suffix
    raise ValueError(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)}")
