"""AUTOMATIC1111 sampler names -> diffusers schedulers."""

from __future__ import annotations

import functools
import math

import diffusers
import numpy as np
import torch
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from desktop.core.samplers import AUTOMATIC, BETA, EXPONENTIAL, KARRAS, SAMPLERS, SGM_UNIFORM, split_sampler_name

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
    "LCM": ("LCMScheduler", {}),
    "TCD": ("TCDScheduler", {}),
}
assert _SCHEDULERS.keys() == SAMPLERS.keys()

_SCHEDULE_FLAGS = {KARRAS: "use_karras_sigmas", EXPONENTIAL: "use_exponential_sigmas", BETA: "use_beta_sigmas"}
# TCD's "gamma" (the step's `eta`), the stochasticity its authors recommend; diffusers' SD pipelines hand the
# scheduler their own `eta` input, 0.0 unless the call says otherwise, so generate.py passes pipeline_inputs().
TCD_GAMMA = 0.3


def pipeline_inputs(sampler: str) -> dict:
    """What an SD pipeline call needs for `sampler` beside the scheduler: TCD's gamma as the call's `eta`."""
    return {"eta": TCD_GAMMA} if split_sampler_name(sampler)[0] == "TCD" else {}


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
        if schedule == SGM_UNIFORM:  # evenly spaced from the last training timestep (999, 749, ... for 4 steps)
            config["timestep_spacing"] = "trailing"
        else:
            config[_SCHEDULE_FLAGS[schedule]] = True
    if class_name == "DPMSolverSDEScheduler":
        config["noise_sampler_seed"] = list(seeds) if seeds else 0
    return _FEW_STEP.get(class_name, getattr(diffusers, class_name)).from_config(config)


class _AnyStepCount:
    """LCM's and TCD's timesteps are a subset of `original_inference_steps` (50) evenly spaced ones, and diffusers
    refuses more steps than that: a longer run (a hires fix's schedule is steps / denoise) takes them from a
    finer grid, the coarsest whose spacing divides the training timesteps (100 for 51 to 100 steps of 1000), so
    it still starts from full noise at the last training timestep (999), as every shorter run does."""

    def set_timesteps(self, num_inference_steps=None, device=None, original_inference_steps=None, timesteps=None,
                      strength: float = 1.0):
        if (num_inference_steps and original_inference_steps is None
                and num_inference_steps > self.config.original_inference_steps):
            train = self.config.num_train_timesteps
            original_inference_steps = next((n for n in range(num_inference_steps, train + 1) if train % n == 0), train)
        super().set_timesteps(num_inference_steps, device, original_inference_steps, timesteps, strength)


class LCM(_AnyStepCount, diffusers.LCMScheduler):
    pass


class TCD(_AnyStepCount, diffusers.TCDScheduler):
    pass


_FEW_STEP = {"LCMScheduler": LCM, "TCDScheduler": TCD}


class _FlowSolver(diffusers.FlowMatchEulerDiscreteScheduler):
    """FlowMatchEuler's sigmas, timesteps, shift, `mu`, schedules and scale_noise, which every flow pipeline runs in
    every mode, with another step on the same flow: x = (1 - sigma) x0 + sigma noise, the model predicting the
    velocity v = noise - x0, so x0 = x - sigma v. Subclasses give `_next(x, x0, sigma, sigma_next)`.

    `generators` (one per picture, the pipeline's own: generate.py sets them) seed a stochastic step's noise, so
    picture i of a batch is the single run with its seed."""

    generators: list | None = None

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, timesteps=None):
        # named as the parent names them: the pipelines look for `sigmas` in the signature
        super().set_timesteps(num_inference_steps, device, sigmas=sigmas, mu=mu, timesteps=timesteps)
        self._history: list[tuple[float, torch.Tensor]] = []  # (lambda, x0) of the steps taken

    def step(self, model_output, timestep, sample, *args, return_dict: bool = True, **kwargs):
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma, sigma_next = (float(self.sigmas[self.step_index + i]) for i in (0, 1))
        x = sample.to(torch.float32)
        x0 = x - sigma * model_output.to(torch.float32)
        prev = self._next(x, x0, sigma, sigma_next).to(model_output.dtype)
        self._history = [*self._history[-2:], (_log_snr(sigma), x0)]
        self._step_index += 1
        return FlowMatchEulerDiscreteSchedulerOutput(prev_sample=prev) if return_dict else (prev,)

    def _noise(self, x: torch.Tensor) -> torch.Tensor:
        generators = self.generators if self.generators and len(self.generators) == x.shape[0] else None
        return randn_tensor(x.shape, generator=generators, device=x.device, dtype=x.dtype)


def _log_snr(sigma: float) -> float:
    """lambda = log(alpha / sigma) of the flow's alpha = 1 - sigma: -inf at pure noise, +inf at the picture."""
    if sigma >= 1:
        return -math.inf
    return math.inf if sigma <= 0 else math.log((1 - sigma) / sigma)


class FlowEulerAncestral(_FlowSolver):
    """Euler a on a flow: an Euler step down past the next sigma (to sigma_next^2 / sigma), then fresh noise brought
    back up to sigma_next, scaled so the sample is again (1 - sigma_next) x0 + sigma_next noise (the rectified-flow
    ancestral step ComfyUI runs for euler_ancestral on flow models). FlowMatchEuler's stochastic_sampling instead
    throws all the noise away each step (x0 re-noised from scratch), which is not what "ancestral" does."""

    def _next(self, x, x0, sigma, sigma_next):
        if sigma_next <= 0:
            return x0
        down = sigma_next ** 2 / sigma
        x_down = (down / sigma) * x + (1 - down / sigma) * x0
        scale = (1 - sigma_next) / (1 - down)
        renoise = math.sqrt(max(sigma_next ** 2 - (down * scale) ** 2, 0.0))
        return scale * x_down + renoise * self._noise(x)


class FlowDPMSolver2M(_FlowSolver):
    """DPM-Solver++(2M) in the flow's own parametrisation (alpha = 1 - sigma): a first-order step from pure noise or
    into the last (zero) sigma, second order from the previous step's x0 in between."""

    def _next(self, x, x0, sigma, sigma_next):
        if sigma_next <= 0:
            return x0
        lam, lam_next = _log_snr(sigma), _log_snr(sigma_next)
        h = lam_next - lam
        denoised = x0
        if self._history and math.isfinite(lam) and math.isfinite(self._history[-1][0]):
            lam_prev, x0_prev = self._history[-1]
            r = (lam - lam_prev) / h
            denoised = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        decay = math.exp(-h) if math.isfinite(h) else 0.0  # e^-h = (sigma_next alpha) / (alpha_next sigma)
        return (sigma_next / sigma) * x + (1 - sigma_next) * (1 - decay) * denoised


class FlowUniPC(_FlowSolver):
    """UniPC (bh2, second order) in the flow's parametrisation: each step is UniP's prediction from this step's and
    the previous step's x0 (the same as DPM++ 2M's at second order), after UniC has corrected the sample the last
    step predicted with the x0 the model gave at it. First order from pure noise; the last step lands on x0."""

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, timesteps=None):
        super().set_timesteps(num_inference_steps, device, sigmas=sigmas, mu=mu, timesteps=timesteps)
        self._predicted: tuple | None = None  # (sample, sigma, sigma_next) of the last prediction

    def _next(self, x, x0, sigma, sigma_next):
        if self._predicted is not None:  # UniC: the last step again, now knowing x0 where it landed
            start, start_sigma, landed = self._predicted
            x = _unipc(start, start_sigma, landed, self._history[-1][1], self._earlier(-2, start_sigma), x0)
        self._predicted = (x, sigma, sigma_next) if sigma_next > 0 else None
        if sigma_next <= 0:
            return x0
        return _unipc(x, sigma, sigma_next, x0, self._earlier(-1, sigma))

    def _earlier(self, index: int, sigma: float) -> tuple | None:
        """The (lambda, x0) before the one at `sigma` (index -1: the newest), when a second order may use it."""
        if len(self._history) < -index or not math.isfinite(_log_snr(sigma)):
            return None
        return self._history[index] if math.isfinite(self._history[index][0]) else None


def _unipc(x, sigma, sigma_next, x0, earlier: tuple | None, x0_next: torch.Tensor | None = None):
    """UniP (x0_next None) or UniC, data prediction with B(h) = e^-h - 1, from `sigma` to `sigma_next`: first order
    without `earlier` (lambda, x0) of a step before, else second order."""
    lam, lam_next = _log_snr(sigma), _log_snr(sigma_next)
    h = lam_next - lam
    phi = math.expm1(-h) if math.isfinite(h) else -1.0  # e^-h - 1, which is also B(h)
    alpha_next = 1 - sigma_next
    plain = (sigma_next / sigma) * x - alpha_next * phi * x0
    if earlier is not None:
        r = (earlier[0] - lam) / h
        slope = (earlier[1] - x0) / r
    if x0_next is None:
        return plain if earlier is None else plain - alpha_next * phi * 0.5 * slope
    if earlier is None:
        return plain - alpha_next * phi * 0.5 * (x0_next - x0)
    phi_2 = phi / -h - 1
    b1, b2 = phi_2 / phi, 2 * (phi_2 / -h - 0.5) / phi
    rho_earlier = (b1 - b2) / (1 - r)
    return plain - alpha_next * phi * (rho_earlier * slope + (b1 - rho_earlier) * (x0_next - x0))


# The flow-matching families (desktop/core/families.py FLOW_SAMPLERS): sampler -> scheduler class, each running in
# every flow pipeline's modes: they all pass `sigmas=` and `mu=` to set_timesteps and call scale_noise for img2img
# and inpaint, which diffusers' FlowMatchHeun (no sigmas, no mu), DPMSolverMultistep (no sigmas, no scale_noise) and
# UniPCMultistep (no scale_noise) do not all take; the solvers above step on FlowMatchEuler's schedule instead.
# Heun is not here: its two model calls a step double the timesteps, and the FLUX, Z-Image and klein img2img
# pipelines then cut them by the strength as if each were a step (retrieve_timesteps counts len(timesteps)).
_FLOW_SCHEDULERS: dict[str, type] = {
    "Euler": diffusers.FlowMatchEulerDiscreteScheduler,
    "Euler a": FlowEulerAncestral,
    "DPM++ 2M": FlowDPMSolver2M,
    "UniPC": FlowUniPC,
}


def make_flow_scheduler(base_config: dict, sampler: str, schedule: str = AUTOMATIC, shift: float = 0.0):
    """A new flow-matching scheduler for `sampler` (a name in _FLOW_SCHEDULERS), keeping the model's settings.

    `shift` > 0 replaces the model's shift and turns its dynamic (resolution-dependent) shifting off; 0 keeps the
    model's own. Karras, Exponential and Beta respace the shifted sigmas as FlowMatchEulerDiscreteScheduler does.
    """
    sampler, schedule = split_sampler_name(sampler, schedule)
    if sampler not in _FLOW_SCHEDULERS:
        raise ValueError(f"{sampler} has no flow-matching scheduler; use one of {', '.join(_FLOW_SCHEDULERS)}")
    config = {k: v for k, v in dict(base_config).items() if k not in _SCHEDULE_FLAGS.values()}
    config["stochastic_sampling"] = False
    if shift > 0:
        config.update(shift=float(shift), use_dynamic_shifting=False)
    cls = _FLOW_SCHEDULERS[sampler]
    if schedule != AUTOMATIC:
        if schedule not in SAMPLERS[sampler]:
            raise ValueError(f"{sampler} does not support the {schedule} schedule")
        if schedule == SGM_UNIFORM:
            cls = _sgm_uniform(cls)
        else:
            config[_SCHEDULE_FLAGS[schedule]] = True
    return cls.from_config(config)


class _SgmUniform:
    """SGM Uniform on a flow: sigmas evenly spaced from 1 (pure noise) in steps of 1 / steps, the last step into 0,
    before the model's shift, whatever sigmas the pipeline would pass (FLUX's are these; Z-Image's and SD3's not)."""

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, timesteps=None):
        count = len(sigmas) if sigmas is not None else num_inference_steps
        if timesteps is None and count:
            sigmas = np.linspace(1.0, 1.0 / count, count)
        super().set_timesteps(num_inference_steps, device, sigmas=sigmas, mu=mu, timesteps=timesteps)


@functools.cache
def _sgm_uniform(cls: type) -> type:
    return type(f"SGMUniform{cls.__name__}", (_SgmUniform, cls), {})
