"""The VLM runtime: one loaded image-text-to-text model + processor, and the batched passes
that descriptors and training evaluation need.

Any Hugging Face model loads by local path through `AutoModelForImageTextToText` and
`AutoProcessor` (dtype and device for the machine: bf16 on GPU, fp32 on CPU;
`trust_remote_code` off unless configured; nothing is fetched from a hub unless the path is
a hub id and `local_files_only` is turned off). Passes over `RowEncoding`s (see vlm_inputs):

- `nll`: per-sample answer-token mean NLL and teacher-forced correctness;
- `generate`: greedy or sampled continuations of the prompts;
- `attention_ratios`: per layer and answer token, attention mass on vision / text positions
  (eager attention, switched on only for that pass).

Work is cut into micro-batches by a token budget (rows sorted by length, padded length x rows
<= budget), so a batch of short image rows and one of long videos use memory alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from operators import storage
from operators.vlm_inputs import Batch, InputsConfig, RowEncoding, collate, vision_token_ids
from operators.vlm_scoring import answer_nll, attention_mass_ratios

__all__ = ["RuntimeConfig", "VLMRuntime", "micro_batches"]


@dataclass(frozen=True)
class RuntimeConfig:
    """Which model to load and how to batch it."""

    model: str  # local directory of a HF image-text-to-text model (or a hub id, see below)
    device: str = "auto"  # "auto": cuda when available, else cpu
    dtype: str = "auto"  # "auto": bfloat16 on GPU, float32 on CPU; or a torch dtype name
    trust_remote_code: bool = False  # run model code shipped with the checkpoint
    local_files_only: bool = True  # never reach a hub at run time
    attn_implementation: str = "sdpa"  # "eager" is used for attention passes regardless
    token_budget: int = 8192  # padded tokens per forward micro-batch
    max_rows: int = 64  # rows per forward micro-batch at most
    num_frames: int = 8  # frames sampled per video
    video_as_frames: bool | None = None  # None: decided by the processor (see vlm_inputs)
    max_tokens: int = 4096  # a longer row is refused (reason too_long)

    @property
    def inputs(self) -> InputsConfig:
        return InputsConfig(self.num_frames, self.video_as_frames, self.max_tokens)


def micro_batches(lengths: list[int], token_budget: int, max_rows: int) -> list[list[int]]:
    """Indices grouped so that max length x rows <= token_budget (a longer row goes alone).

    >>> micro_batches([5, 1, 4, 2], token_budget=8, max_rows=8)
    [[1, 3], [2], [0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = max(lengths[i], max((lengths[j] for j in current), default=0))
        if current and (width * (len(current) + 1) > token_budget or len(current) >= max_rows):
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def _device_and_dtype(config: RuntimeConfig):
    import torch

    device = config.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if config.dtype == "auto":
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        dtype = getattr(torch, config.dtype)
    return device, dtype


class VLMRuntime:
    """A loaded VLM with batched NLL, generation and attention passes."""

    def __init__(self, config: RuntimeConfig):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.config = config
        self.device, self.dtype = _device_and_dtype(config)
        # A model directory under an object-store URI (RUN/proxy of a remote run) is copied
        # once per node to a local cache: from_pretrained reads local directories.
        model = storage.local_copy(config.model)
        local = config.local_files_only or os.path.isdir(model)
        common = {"trust_remote_code": config.trust_remote_code, "local_files_only": local}
        self.processor = AutoProcessor.from_pretrained(model, **common)
        self.model = AutoModelForImageTextToText.from_pretrained(
            model, dtype=self.dtype, attn_implementation=config.attn_implementation, **common
        ).to(self.device)
        self.model.eval()
        self.tokenizer = self.processor.tokenizer
        self.num_layers = self.model.config.get_text_config().num_hidden_layers

    def _to_device(self, batch: Batch) -> dict:
        out = {}
        for key, value in batch.inputs.items():
            if value.is_floating_point():
                value = value.to(self.dtype)
            out[key] = value.to(self.device)
        return out

    def _groups(self, encodings: list[RowEncoding]) -> list[list[int]]:
        lengths = [len(e) for e in encodings]
        return micro_batches(lengths, self.config.token_budget, self.config.max_rows)

    def forward(self, batch: Batch, **kwargs):
        """One model forward on a collated batch (no grad)."""
        import torch

        with torch.inference_mode():
            return self.model(**self._to_device(batch), **kwargs)

    def nll(self, encodings: list[RowEncoding]) -> tuple[np.ndarray, np.ndarray]:
        """Answer-token mean NLL (float64, NaN without answer) and greedy correctness (bool)."""
        nll = np.full(len(encodings), np.nan)
        correct = np.zeros(len(encodings), dtype=bool)
        for group in self._groups(encodings):
            batch = collate([encodings[i] for i in group], self.processor, "right")
            logits = self.forward(batch).logits
            values, hits = answer_nll(logits, batch.labels.to(logits.device))
            nll[group] = values.double().cpu().numpy()
            correct[group] = hits.cpu().numpy()
        return nll, correct

    def generate(
        self,
        encodings: list[RowEncoding],
        max_new_tokens: int = 32,
        num_return_sequences: int = 1,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> list[list[list[int]]]:
        """Token ids of the continuations of each prompt (its answer_ids are ignored), cut
        after the end-of-turn token: [row][sequence] -> ids."""
        import torch

        prompts = [RowEncoding(e.prompt_ids, [], e.token_fields, e.media) for e in encodings]
        out: list[list[list[int]]] = [[] for _ in encodings]
        options = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
        vision = vision_token_ids(self.processor)
        if vision:  # a generated media placeholder would not match any media features
            options["suppress_tokens"] = sorted(vision)
        if do_sample:
            options.update(temperature=temperature, top_p=top_p, top_k=0)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        for group in self._groups(prompts):
            batch = collate([prompts[i] for i in group], self.processor, "left")
            with torch.inference_mode():
                sequences = self.model.generate(
                    **self._to_device(batch),
                    num_return_sequences=num_return_sequences,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **options,
                )
            width = batch.inputs["input_ids"].shape[1]
            new = sequences[:, width:].cpu().tolist()
            for k, ids in enumerate(new):
                out[group[k // num_return_sequences]].append(_cut(ids, eos_ids))
        return out

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def attention_ratios(self, encodings: list[RowEncoding]) -> list[np.ndarray]:
        """Per row, (num_layers, T) vision / text attention mass ratios at the T positions
        that predict its answer tokens (eager attention for this pass only)."""
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation("eager")
        out: list[np.ndarray] = [np.zeros((self.num_layers, 0)) for _ in encodings]
        try:
            for group in self._groups(encodings):
                batch = collate([encodings[i] for i in group], self.processor, "right")
                result = self.forward(batch, output_attentions=True)
                query = batch.labels[:, 1:] != -100  # position t predicts answer token t+1
                query = _pad_false_column(query)
                ratios = attention_mass_ratios(
                    tuple(a.cpu() for a in result.attentions),
                    batch.vision_mask,
                    batch.inputs["attention_mask"],
                    query,
                )
                for k, i in enumerate(group):
                    cols = query[k].nonzero().flatten()
                    out[i] = ratios[k][:, cols].double().numpy()
        finally:
            self.model.set_attn_implementation(previous)
        return out


def _pad_false_column(mask):
    """(B, L-1) -> (B, L) by appending a False column."""
    import torch

    return torch.cat([mask, torch.zeros_like(mask[:, :1])], dim=1)


def _cut(ids: list[int], eos_ids: set[int]) -> list[int]:
    for k, token in enumerate(ids):
        if token in eos_ids:
            return ids[: k + 1]
    return ids
