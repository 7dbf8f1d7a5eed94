"""Model-based descriptors as one callable class for a Ray Data actor pool.

`ModelDescriptors(config)` loads the proxy VLM once per actor and, per batch, adds these
columns (every input row comes back; a row it cannot process gets NaN / None descriptors and
its reason in `model_error`):

- `loss`, `loss_blind`, `vds`, `ppl` (GDO, Wu & Zhao 2026): answer-token mean NLL with the
  media and with the media removed; vds = loss_blind - loss; ppl = exp(clip(loss, -30, 30)).
- `temporal_loss_gap` (the measured variant of GDO's temporal demand, in nats; unbounded, may
  be negative): loss with the video frames shuffled (or reversed / one frame,
  `temporal_order`) minus loss with the frames in order; 0 for images and text. It is not
  GDO's 0 / 0.5 / 1 label: selection/gdo_temporal.py derives `gdo_temporal_label` from it.
- `temporal_prompted` (GDO's label itself): the proxy answers "Temporal" or "Static" to a
  fixed prompt about the question -> 1 / 0 / 0.5 otherwise; only when `prompted_temporal`.
- `stability` (GDO): 5 sampled answers (T 0.8, top_p 0.9, 32 tokens), mean pairwise word-set
  Jaccard.
- `pism_lambda`, `pism_label` (Qi et al. 2026): see operators/pism.py.
- `cmab_ratio`, `cmab_label` (Qi et al. 2026): see operators/cmab.py; over the greedy answer.

`apply_model_descriptors(ds, config)` maps it over a Ray Dataset with an autoscaling actor
pool (`num_gpus` per actor on GPU), in pyarrow batches so that the input schema passes
through unchanged and missing descriptors are written as nulls. Each descriptor group is
switchable in the config.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from operators.cmab import cmab_label, cmab_ratio
from operators.media import MediaError
from operators.pism import PismConfig, mask_media, pism_label, search_lambda
from operators.vlm_inputs import (
    RowEncoding,
    RowError,
    batch_rows,
    decode_media,
    encode_rows,
    frame_order,
    split_turns,
)
from operators.vlm_runtime import RuntimeConfig, VLMRuntime
from operators.vlm_scoring import word_jaccard

__all__ = [
    "DESCRIPTOR_GROUPS",
    "FLOAT_COLUMNS",
    "STRING_COLUMNS",
    "DescriptorConfig",
    "ModelDescriptors",
    "apply_model_descriptors",
    "prompted_temporal_value",
]

DESCRIPTOR_GROUPS = ("loss", "temporal", "stability", "pism", "cmab")
FLOAT_COLUMNS = (
    "loss",
    "loss_blind",
    "vds",
    "ppl",
    "temporal_loss_gap",
    "temporal_prompted",
    "stability",
    "pism_lambda",
    "cmab_ratio",
)
STRING_COLUMNS = ("pism_label", "cmab_label", "model_error")
TEMPORAL_PROMPT = (
    "Here is a question about a video: {question}\n"
    "Does answering it require understanding how the video changes over time? "
    "Answer Temporal or Static."
)


@dataclass(frozen=True)
class DescriptorConfig:
    """The model-descriptor stage: which proxy, which descriptors, and their settings."""

    runtime: RuntimeConfig  # the proxy model and its batching
    descriptors: tuple[str, ...] = DESCRIPTOR_GROUPS  # groups to compute (others stay NaN)
    temporal_order: str = "shuffled"  # frames for the measured temporal: shuffled|reversed|single
    prompted_temporal: bool = False  # also ask GDO's Temporal/Static prompt (instruct proxies)
    stability_samples: int = 5
    stability_temperature: float = 0.8
    stability_top_p: float = 0.9
    stability_tokens: int = 32
    cmab_tokens: int = 16  # greedy answer length whose attention CMAB measures
    pism: PismConfig = field(default_factory=PismConfig)
    seed: int = 0


def prompted_temporal_value(text: str) -> float:
    """GDO's mapping of the proxy's reply: Temporal -> 1, Static -> 0, anything else 0.5.

    >>> [prompted_temporal_value(t) for t in ("Temporal", "static.", "maybe")]
    [1.0, 0.0, 0.5]
    """
    words = text.strip().lower().split()
    first = words[0].strip(".,:;!\"'") if words else ""
    return {"temporal": 1.0, "static": 0.0}.get(first, 0.5)


def row_seed(seed: int, row_id: str) -> int:
    """The sampling seed of one row: 63 bits of SHA-256 over (seed, row id)."""
    digest = hashlib.sha256(f"{seed}\n{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class ModelDescriptors:
    """Ray Data actor UDF: load the proxy once, add the model-descriptor columns per batch."""

    def __init__(self, config: DescriptorConfig):
        import torch

        self.config = config
        self.runtime = VLMRuntime(config.runtime)
        self.counts: Counter = Counter()
        torch.manual_seed(config.seed)

    def __call__(self, batch):
        """Add the descriptor columns to a batch: a dict of NumPy arrays (returns a dict) or a
        pyarrow Table (returns a Table with the input schema kept and NaN written as null)."""
        if isinstance(batch, pa.Table):
            out = self._describe(batch.to_pylist())
            table = batch.drop_columns([c for c in out if c in batch.column_names])
            for name, values in out.items():
                table = table.append_column(name, _arrow_column(values))
            return table
        return {**batch, **self._describe(batch_rows(batch))}

    def _describe(self, rows: list[dict]) -> dict[str, np.ndarray]:
        out = {name: np.full(len(rows), np.nan) for name in FLOAT_COLUMNS}
        out.update({name: np.full(len(rows), None, dtype=object) for name in STRING_COLUMNS})
        media, encodings = self._encode(rows, out["model_error"])
        ok = [i for i in range(len(rows)) if out["model_error"][i] is None]
        groups = set(self.config.descriptors)
        correct: dict[int, bool] = {}
        if ok and groups & {"loss", "temporal", "pism"}:
            correct = self._losses(rows, ok, media, encodings, out)
        if ok and "stability" in groups:
            self._stability(rows, ok, encodings, out)
        if ok and "pism" in groups:
            self._pism(rows, ok, media, correct, out)
        if ok and "cmab" in groups:
            self._cmab(ok, encodings, out)
        if ok and self.config.prompted_temporal:
            self._prompted_temporal(rows, ok, out)
        self.counts.update(total=len(rows), scored=len(ok))
        self.counts.update(str(e).split(":")[0] for e in out["model_error"] if e is not None)
        return out

    def _encode_all(self, rows: list[dict], media: list, answers=None) -> list:
        """Encodings (or RowErrors, in place) of rows with the given media, one processor call."""
        inputs = self.runtime.config.inputs
        return encode_rows(self.runtime.processor, rows, media, inputs, answers)

    def _encode(self, rows: list[dict], errors: np.ndarray):
        """Decode media and encode each row with them; a failing row gets its reason."""
        media: list[list[np.ndarray] | None] = [None] * len(rows)
        encodings: list[RowEncoding | None] = [None] * len(rows)
        for i, row in enumerate(rows):
            try:
                media[i] = decode_media(row, self.runtime.config.inputs.num_frames)
            except MediaError as error:
                errors[i] = f"media: {error}"
        decoded = [i for i in range(len(rows)) if errors[i] is None]
        encoded = self._encode_all([rows[i] for i in decoded], [media[i] for i in decoded])
        for i, result in zip(decoded, encoded, strict=True):
            if isinstance(result, RowError):
                errors[i] = f"{result.reason}: {result}"
            else:
                encodings[i] = result
        return media, encodings

    def _variant(self, row: dict, media: list[np.ndarray]) -> list[np.ndarray]:
        order = self.config.temporal_order
        return [m[frame_order(len(m), str(row["id"]), order)] if m.ndim == 4 else m for m in media]

    def _loss_jobs(self, rows, ok, media, encodings) -> list[tuple[str, int, object]]:
        """(kind, row, encoding or RowError): with media, blind, and frames reordered."""
        jobs, extra = [("loss", i, encodings[i]) for i in ok], []
        for i in ok:
            if media[i]:
                extra.append(("blind", i, None))
            if any(m.ndim == 4 for m in media[i]) and "temporal" in self.config.descriptors:
                extra.append(("temporal", i, self._variant(rows[i], media[i])))
        encoded = self._encode_all([rows[i] for _, i, _ in extra], [m for _, _, m in extra])
        jobs += [(kind, i, e) for (kind, i, _), e in zip(extra, encoded, strict=True)]
        return jobs

    def _losses(self, rows, ok, media, encodings, out) -> dict[int, bool]:
        """loss, loss_blind, vds, ppl and the measured temporal in one batched NLL pass.

        Returns each row's teacher-forced greedy correctness on the unmasked media.
        """
        jobs = self._loss_jobs(rows, ok, media, encodings)
        for _, i, enc in jobs:
            if isinstance(enc, RowError):
                out["model_error"][i] = f"{enc.reason}: {enc}"
        jobs = [job for job in jobs if not isinstance(job[2], RowError)]
        nll, hits = self.runtime.nll([job[2] for job in jobs])
        values = {(kind, i): nll[k] for k, (kind, i, _) in enumerate(jobs)}
        correct = {i: bool(hits[k]) for k, (kind, i, _) in enumerate(jobs) if kind == "loss"}
        for i in ok:
            if out["model_error"][i] is not None:
                continue
            loss = values[("loss", i)]
            blind = values.get(("blind", i), loss)  # text rows: blind is the same input
            out["loss"][i], out["loss_blind"][i] = loss, blind
            out["vds"][i] = blind - loss
            out["ppl"][i] = float(np.exp(np.clip(loss, -30.0, 30.0)))
            if "temporal" in self.config.descriptors:
                out["temporal_loss_gap"][i] = values.get(("temporal", i), loss) - loss
        return correct

    def _stability(self, rows, ok, encodings, out) -> None:
        """Mean pairwise word-set Jaccard of sampled answers (GDO stability).

        Each row is sampled alone from a generator seeded by (seed, row id): its k-th sample
        depends on (seed, row id, k) only, so a rerun, a resume or another actor count or
        batch composition gives the same value."""
        import torch

        cfg = self.config
        for i in ok:
            torch.manual_seed(row_seed(cfg.seed, str(rows[i]["id"])))
            (samples,) = self.runtime.generate(
                [encodings[i]],
                max_new_tokens=cfg.stability_tokens,
                num_return_sequences=cfg.stability_samples,
                do_sample=True,
                temperature=cfg.stability_temperature,
                top_p=cfg.stability_top_p,
            )
            texts = [self.runtime.decode(s) for s in samples]
            pairs = list(itertools.combinations(texts, 2))
            out["stability"][i] = float(np.mean([word_jaccard(a, b) for a, b in pairs]))

    def _pism(self, rows, ok, media, correct, out) -> None:
        """λ* by progressive masking; correctness is teacher-forced greedy exact match."""
        ok = [i for i in ok if i in correct]

        def accuracy(active: list[int], ratio: float) -> np.ndarray:
            chosen = [ok[a] for a in active]
            if ratio == 0.0:
                return np.array([float(correct[i]) for i in chosen])
            return self._masked_accuracy(rows, chosen, media, correct, ratio)

        lam = search_lambda([str(rows[i]["id"]) for i in ok], accuracy, self.config.pism)
        for i, value in zip(ok, lam, strict=True):
            out["pism_lambda"][i], out["pism_label"][i] = value, pism_label(value)

    def _masked_accuracy(self, rows, chosen, media, correct, ratio: float) -> np.ndarray:
        """Share of K masked copies answered correctly, per chosen row."""
        cfg = self.config.pism
        owners, masked = [], []
        for i in chosen:
            for k in range(cfg.masks_per_ratio if media[i] else 0):
                owners.append(i)
                masked.append(mask_media(media[i], ratio, cfg, str(rows[i]["id"]), k))
        encodings = self._encode_all([rows[i] for i in owners], masked)
        hits = self.runtime.nll(encodings)[1] if encodings else np.zeros(0, dtype=bool)
        acc = []
        for i in chosen:
            mine = [h for j, h in zip(owners, hits, strict=True) if j == i]
            acc.append(float(np.mean(mine)) if mine else float(correct[i]))  # text: unchanged
        return np.array(acc)

    def _cmab(self, ok, encodings, out) -> None:
        """Attention balance over the greedy answer's tokens."""
        generated = self.runtime.generate(
            [encodings[i] for i in ok], max_new_tokens=self.config.cmab_tokens
        )
        answered = []
        for i, ids in zip(ok, generated, strict=True):
            e = encodings[i]
            answered.append(RowEncoding(e.prompt_ids, ids[0], e.token_fields, e.media))
        ratios = self.runtime.attention_ratios(answered)
        for i, r in zip(ok, ratios, strict=True):
            out["cmab_ratio"][i] = cmab_ratio(r)
            out["cmab_label"][i] = cmab_label(out["cmab_ratio"][i])

    def _prompted_temporal(self, rows, ok, out) -> None:
        """GDO's prompted temporal demand: 1 Temporal, 0 Static, 0.5 otherwise (videos only)."""
        videos = [i for i in ok if rows[i]["media_type"] == "video"]
        asks = []
        for i in videos:
            turns, _ = split_turns(rows[i])
            question = " ".join(t["content"] for t in turns if t["role"] == "user")
            text = TEMPORAL_PROMPT.format(question=question.replace("<video>", "").strip())
            asks.append({"messages": [{"role": "user", "content": text}], "answer": "x"})
        prompts = self._encode_all(asks, [None] * len(asks), [""] * len(asks))
        replies = self.runtime.generate(prompts, max_new_tokens=4) if prompts else []
        for i in ok:
            out["temporal_prompted"][i] = 0.0
        for i, ids in zip(videos, replies, strict=True):
            out["temporal_prompted"][i] = prompted_temporal_value(self.runtime.decode(ids[0]))


def _arrow_column(values: np.ndarray) -> pa.Array:
    if values.dtype == object:
        return pa.array(values.tolist(), type=pa.string())
    return pa.array(values, type=pa.float64(), mask=np.isnan(values))


def apply_model_descriptors(
    ds,
    config: DescriptorConfig,
    min_actors: int = 1,
    max_actors: int = 1,
    batch_size: int = 32,
    num_gpus: float | None = None,
):
    """Map ModelDescriptors over a Ray Dataset with an autoscaling actor pool.

    num_gpus: per actor; None -> 1 when the runtime device resolves to GPU, else 0 (CPU).
    """
    import ray

    if num_gpus is None:
        device = config.runtime.device
        num_gpus = 1 if device.startswith("cuda") else 0
        if device == "auto":
            num_gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    resources = {"num_gpus": num_gpus} if num_gpus else {"num_cpus": 1}
    return ds.map_batches(
        ModelDescriptors,
        fn_constructor_args=(config,),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=min_actors, max_size=max_actors),
        **resources,
    )
