"""Prompt editing and alternation during a run: the conditioning changes at the steps the prompt says.

``[from:to:when]`` and ``[a|b]`` (desktop/core/prompts.prompt_schedule) give each span of steps its own
prompt text, for the prompt and the negative prompt alike. The texts are encoded together as A1111 encodes
them (prompt_encoding.encode_spans); the step callback hands the pipeline the next span's encoding
(prompt_embeds, and SDXL's pooled add_text_embeds) when a span ends, so the run is one pipeline call as
without editing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from desktop.core import prompts


def spans(conditioning, steps: int, after: int | None = None) -> list[tuple[int, object]]:
    """[(last step, the conditioning of that span)], steps counted from 1; one entry without editing.
    `after`: the first pass's steps, for the hires fix's second pass (prompts.prompt_schedule)."""
    prompt = prompts.prompt_schedule(conditioning.prompt, steps, after)
    negative = prompts.prompt_schedule(conditioning.negative_prompt, steps, after)
    ends = sorted({end for end, _ in prompt} | {end for end, _ in negative})
    return [(end, conditioning.replace(prompt=_at(prompt, end), negative_prompt=_at(negative, end))) for end in ends]


def _at(schedule: list[tuple[int, str]], step: int) -> str:
    return next(text for end, text in schedule if step <= end)


@dataclass
class Schedule:
    """The encodings of each span (prompt_encoding.Encoded), in order of their last step."""

    entries: list[tuple[int, object]]
    guided: bool
    batch: int

    @property
    def first(self):
        return self.entries[0][1]

    @property
    def params(self) -> dict:
        merged: dict = {}
        for _, encoded in self.entries:
            merged.update(encoded.params)
        return merged

    @property
    def embeddings_used(self) -> list[str]:
        return list(dict.fromkeys(name for _, encoded in self.entries for name in encoded.embeddings_used))

    def _index(self, step: int) -> int:
        """The span that sampling step `step` (from 0) runs in: the first whose last step is >= it (A1111)."""
        return next((i for i, (end, _) in enumerate(self.entries) if step <= end), len(self.entries) - 1)

    def switch(self, done: int, tensors: dict) -> dict:
        """After sampling step `done` (from 0): the pipeline tensors for the next step when its span differs."""
        now, upcoming = self._index(done), self._index(done + 1)
        if now == upcoming:
            return {}
        kwargs = self.entries[upcoming][1].kwargs
        current = tensors["prompt_embeds"]
        out = {"prompt_embeds": self._pair(kwargs["prompt_embeds"], kwargs.get("negative_prompt_embeds"))
               .to(device=current.device, dtype=current.dtype)}
        if "add_text_embeds" in tensors and "pooled_prompt_embeds" in kwargs:
            pooled = tensors["add_text_embeds"]
            out["add_text_embeds"] = self._pair(kwargs["pooled_prompt_embeds"],
                                                kwargs.get("negative_pooled_prompt_embeds")).to(pooled)
        return out

    def _pair(self, positive: torch.Tensor, negative: torch.Tensor | None) -> torch.Tensor:
        """As the pipeline lays them out: the negative batch, then the positive (guided), each image's copy."""
        repeat = (self.batch,) + (1,) * (positive.ndim - 1)
        positive = positive.repeat(*repeat)
        if not self.guided or negative is None:
            return positive
        return torch.cat([negative.repeat(*repeat), positive])
