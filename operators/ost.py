"""OST one-step utility (One-Step-Train, arXiv 2605.07488) as a Ray Data actor operator.

The utility of training sample i for a small target set V, on a warmed-up proxy θ:

- exact:       Δ_i = L_V(θ) − L_V(θ − η ∇ℓ_i(θ))   (one SGD step on sample i alone);
- first order: Δ_i ≈ η ⟨∇L_V(θ), ∇ℓ_i(θ)⟩, optionally after a fixed random projection of
  both gradients to `projection_dim` dimensions (as LESS does) so it runs at pool scale.

ℓ_i is the answer-token mean NLL of row i (answer-only labels from operators/vlm_inputs) and
L_V the mean of ℓ over V. Gradients are taken over a chosen parameter subset (`params`, name
prefixes); the rest of θ is frozen. High utility: the step lowers the target loss; the
lowest utilities flag harmful ("toxic") rows such as wrong answers.

Two gradient paths, chosen from the subset:

- head path (subset inside the output head, e.g. `lm_head`, the default): one no-grad forward
  per micro-batch captures the head's inputs, then per-sample head gradients come batched from
  `torch.func.vmap(torch.func.grad(...))`; the exact L_V(θ − η g_i) is recomputed from the
  target rows' cached head inputs (exact, since nothing upstream of the head changes), in
  float64 so that Δ is not float32 rounding noise at small η;
- loop path (any other subset, e.g. the last decoder blocks): a VLM forward carries
  data-dependent media handling (grid sizes, rope indices, scatter of vision features) that
  vmap cannot batch, so per-sample gradients come from one functional forward + backward per
  row (`torch.func.functional_call`), and the exact L_V(θ − η g_i) from one functional
  forward over V per row.

A tied output head (Qwen2-VL ties lm_head to the input embeddings) is treated as untied: the
step moves the head's use of the weight only, in both paths.

The target set V is fixed before the stage runs and is the same on every actor: the rows whose
ids a file lists (`target_ids`), or a stratified sample of `pool` — per category a quota
proportional to its size (largest remainder), rows ordered by SHA1(seed:id), ids in
`exclude_ids` (the proxy's warm-up slice, `RUN/proxy/train_ids.txt`) left out.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from operators import storage
from operators.media import MediaError
from operators.vlm_inputs import IGNORE_INDEX, RowError, batch_rows, collate, decode_media
from operators.vlm_inputs import encode_rows as encode_many
from operators.vlm_runtime import RuntimeConfig, VLMRuntime, micro_batches
from operators.vlm_scoring import answer_nll

__all__ = [
    "FORMS",
    "OneStepUtility",
    "OstConfig",
    "SparseSignProjection",
    "head_grads",
    "loop_grads",
    "row_nll",
    "stratified_target",
    "target_source",
]

FORMS = ("first_order", "exact")


@dataclass(frozen=True)
class OstConfig:
    """The OST utility stage: proxy, form, step size, parameter subset, target set."""

    runtime: RuntimeConfig  # the warmed-up proxy (RUN/proxy) and its batching
    pool: str  # Parquet file or directory the target rows come from (RUN/pool)
    form: str = "first_order"  # "first_order": η⟨∇L_V, ∇ℓ_i⟩; "exact": L_V(θ) − L_V(θ − η∇ℓ_i)
    eta: float = 1e-3  # step size η (small: the first-order form is its η -> 0 limit)
    params: tuple[str, ...] = ("lm_head",)  # parameter-name prefixes; ("",) = all parameters
    target_ids: str | None = None  # text file, one id per line; None: stratified sample
    # a clean held-out pool V is sampled from instead of `pool` (a synthetic pool directory
    # with ground_truth.parquet: its defect-free rows; or Parquet shards of our schema)
    target_pool: str | None = None
    target_size: int = 64  # rows in the stratified target sample
    exclude_ids: str | None = None  # ids never sampled into V (e.g. RUN/proxy/train_ids.txt)
    projection_dim: int = 4096  # first order: project gradients to this many dims (0: none)
    projection_nonzeros: int = 4  # nonzeros per input coordinate of the sparse projection
    seed: int = 0  # target sample order and projection


def row_nll(logits, labels):
    """Answer-token mean NLL of one row: logits (L, V), labels (L,); position t predicts t+1.

    Written without data-dependent shapes so that `torch.func.vmap` can batch it.
    """
    import torch

    shift, target = logits[:-1], labels[1:]
    mask = target != IGNORE_INDEX
    logp = torch.log_softmax(shift, dim=-1)
    token = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token * mask).sum() / mask.sum().clamp(min=1)


def head_grads(head, hidden, labels, dtype=None):
    """Per-sample gradients of `row_nll` w.r.t. the head's parameters, batched by vmap.

    head: the output module (e.g. nn.Linear); hidden: (B, L, H) its inputs; labels: (B, L).
    Returns (B, D): each row's gradient flattened in `named_parameters` order.
    """
    import torch
    from torch.func import functional_call, grad, vmap

    dtype = dtype or hidden.dtype
    params = {k: v.detach().to(dtype) for k, v in head.named_parameters()}

    def loss(p, h, y):
        logits = functional_call(head, p, (h.unsqueeze(0),))[0]  # (L, V)
        return row_nll(logits, y)

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, hidden.to(dtype), labels)
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)


def loop_grads(model, names: list[str], batches: list[dict], labels: list) -> object:
    """Per-sample gradients over the named parameters, one functional forward/backward per row.

    batches: model inputs of one row each; labels: (1, L) each. Returns (B, D) float32.
    """
    import torch
    from torch.func import functional_call

    named = dict(model.named_parameters(remove_duplicate=False))
    out = []
    for inputs, y in zip(batches, labels, strict=True):
        params = {n: named[n].detach().requires_grad_(True) for n in names}
        logits = functional_call(model, params, (), inputs, tie_weights=False).logits
        loss = row_nll(logits[0].float(), y[0])
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        flat = [
            (torch.zeros_like(p) if g is None else g).reshape(-1).float()
            for p, g in zip(params.values(), grads, strict=True)
        ]
        out.append(torch.cat(flat))
    return torch.stack(out)


class SparseSignProjection:
    """A fixed seeded sparse Rademacher projection R^D -> R^k (a sparse JL transform).

    Each input coordinate goes to `nonzeros` output coordinates with random signs, scaled by
    1/sqrt(nonzeros), so E⟨Px, Py⟩ = ⟨x, y⟩. Unlike LESS's dense Gaussian/Rademacher matrix,
    it needs D x nonzeros indices instead of D x k entries, which fits any parameter subset.
    """

    def __init__(self, dim: int, k: int, seed: int = 0, nonzeros: int = 4):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.k, self.nonzeros = k, nonzeros
        self.index = torch.randint(0, k, (nonzeros, dim), generator=generator)
        signs = torch.randint(0, 2, (nonzeros, dim), generator=generator) * 2 - 1
        self.sign = signs.float() / nonzeros**0.5

    def __call__(self, x):
        """x: (B, D) -> (B, k)."""
        import torch

        out = torch.zeros(x.shape[0], self.k, dtype=x.dtype, device=x.device)
        for index, sign in zip(self.index, self.sign, strict=True):
            values = x * sign.to(x.device, x.dtype)
            out.index_add_(1, index.to(x.device), values)
        return out


def stratified_target(
    ids: list[str], categories: list, size: int, seed: int = 0, exclude=()
) -> list[str]:
    """A deterministic stratified sample: per category a quota proportional to its count
    (largest remainder), rows in SHA1(seed:id) order; excluded ids never chosen.

    >>> stratified_target(["a", "b", "c", "d"], ["x", "x", "x", "y"], 2)
    ['a', 'd']
    """
    excluded = set(exclude)
    by_cat: dict[str, list[str]] = {}
    for i, c in zip(ids, categories, strict=True):
        if i not in excluded:
            by_cat.setdefault(str(c), []).append(i)
    total = sum(len(v) for v in by_cat.values())
    size = min(size, total)
    exact = {c: size * len(v) / total for c, v in by_cat.items()} if total else {}
    quota = {c: int(q) for c, q in exact.items()}
    for c in sorted(exact, key=lambda c: (quota[c] - exact[c], c))[: size - sum(quota.values())]:
        quota[c] += 1

    def key(i: str) -> str:
        return hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()

    chosen = [i for c in sorted(by_cat) for i in sorted(by_cat[c], key=key)[: quota[c]]]
    return sorted(chosen, key=key)


def _read_ids(path: str | None) -> list[str]:
    if not path or not storage.exists(path):
        return []
    return [line.strip() for line in storage.read_text(path).splitlines() if line.strip()]


def target_source(config: OstConfig) -> str:
    """Where V comes from, in words (for the docs, the logs and the stage counts)."""
    if config.target_ids:
        return f"ids listed in {config.target_ids}"
    if config.target_pool:
        return f"stratified sample of the clean held-out pool {config.target_pool}"
    return f"stratified sample of {config.pool} less {config.exclude_ids} (the ranked pool)"


def _clean_target_rows(config: OstConfig) -> list[dict]:
    """V from a clean held-out pool: its defect-free rows (ground truth) or all its rows."""
    from training.data import heldout_rows, parquet_dataset

    truth = storage.join(config.target_pool, "ground_truth.parquet")
    if storage.exists(truth):
        table = heldout_rows(config.target_pool, per_category=1 << 30)
    else:
        table = parquet_dataset(config.target_pool).to_table()
    rows = table.to_pylist()
    wanted = stratified_target(
        [str(r["id"]) for r in rows],
        [r.get("category") for r in rows],
        config.target_size,
        config.seed,
    )
    by_id = {str(r["id"]): r for r in rows}
    return [by_id[i] for i in wanted]


def target_rows(config: OstConfig) -> list[dict]:
    """The target rows V, in a fixed order (see the module docstring and `target_source`)."""
    import pyarrow.dataset as pds

    if config.target_pool and not config.target_ids:
        return _clean_target_rows(config)

    filesystem, path = storage.filesystem(config.pool)
    dataset = pds.dataset(path, filesystem=filesystem, format="parquet")
    keys = dataset.to_table(columns=["id", "category"])
    if config.target_ids:
        wanted = _read_ids(config.target_ids)
    else:
        wanted = stratified_target(
            [str(i) for i in keys.column("id").to_pylist()],
            keys.column("category").to_pylist(),
            config.target_size,
            config.seed,
            _read_ids(config.exclude_ids),
        )
    rows = dataset.to_table(filter=pds.field("id").isin(wanted)).to_pylist()
    order = {i: k for k, i in enumerate(wanted)}
    return sorted(rows, key=lambda r: order[str(r["id"])])


class OneStepUtility:
    """Ray Data actor UDF: load the proxy and the target set V once, add `ost_utility` (and
    `ost_error`, the reason where a row could not be scored) to every row of each batch."""

    def __init__(self, config: OstConfig):
        import torch

        if config.form not in FORMS:
            raise ValueError(f"ost form must be one of {FORMS}, got {config.form!r}")
        self.config = config
        self.runtime = VLMRuntime(config.runtime)
        self.counts: Counter = Counter()
        model = self.runtime.model
        self.head = model.get_output_embeddings()
        head_name = next(n for n, m in model.named_modules() if m is self.head)
        named = dict(model.named_parameters(remove_duplicate=False))
        self.names = sorted(n for n in named if n.startswith(tuple(config.params)))
        if not self.names:
            raise ValueError(f"no parameter name starts with any of {config.params}")
        head_names = sorted(f"{head_name}.{k}" for k, _ in self.head.named_parameters())
        self.head_path = self.names == head_names
        self.theta = {n: named[n].detach() for n in self.names}
        # the exact head-path step needs float64: Δ is a difference of two close losses
        exact_head = self.head_path and config.form == "exact" and self.runtime.device == "cpu"
        self.grad_dtype = torch.float64 if exact_head else torch.float32
        self._prepare_target()

    # --- the target set -------------------------------------------------------------------

    def _prepare_target(self) -> None:
        """Encode V once; cache what L_V needs; compute L_V(θ) and the (projected) ∇L_V."""
        rows = target_rows(self.config)
        encodings, errors = self._encode(rows)
        self.target = [e for e, err in zip(encodings, errors, strict=True) if err is None]
        if not self.target:
            raise ValueError(f"no target row of {len(rows)} could be encoded: {errors[:3]}")
        self.target_batches = []
        for group in self._groups(self.target):
            batch = collate([self.target[i] for i in group], self.runtime.processor, "right")
            inputs = self._inputs(batch)
            labels = batch.labels.to(self.runtime.device)
            if self.head_path:  # the head's inputs are all L_V needs when only the head moves
                inputs = self._head_inputs(inputs).to(self.grad_dtype)
            self.target_batches.append((inputs, labels))
        self.base_loss = self.target_loss(self.theta)
        self.projection = self.target_grad = None
        if self.config.form == "first_order":
            grads = self.gradients(self.target)  # ∇L_V = mean of the rows' gradients
            if self.config.projection_dim:
                self.projection = SparseSignProjection(
                    grads.shape[1],
                    self.config.projection_dim,
                    self.config.seed,
                    self.config.projection_nonzeros,
                )
            self.target_grad = self._project(grads.mean(dim=0, keepdim=True))[0]
        self.counts.update(target_rows=len(self.target), target_failed=len(rows) - len(self.target))

    def target_loss(self, params: dict) -> float:
        """L_V at θ with the chosen subset replaced by `params` (mean over V of row NLLs)."""
        import torch
        from torch.func import functional_call

        total = 0.0
        with torch.no_grad():
            for inputs, labels in self.target_batches:
                if self.head_path:
                    local = {n.rsplit(".", 1)[1]: p.to(inputs.dtype) for n, p in params.items()}
                    logits = functional_call(self.head, local, (inputs,))
                else:
                    logits = functional_call(
                        self.runtime.model, params, (), inputs, tie_weights=False
                    ).logits
                total += float(answer_nll(logits.double(), labels)[0].sum())
        return total / len(self.target)

    # --- gradients --------------------------------------------------------------------------

    def _groups(self, encodings: list) -> list[list[int]]:
        config = self.runtime.config
        return micro_batches([len(e) for e in encodings], config.token_budget, config.max_rows)

    def _inputs(self, batch) -> dict:
        out = {}
        for key, value in batch.inputs.items():
            value = value.to(self.runtime.dtype) if value.is_floating_point() else value
            out[key] = value.to(self.runtime.device)
        return out

    def _head_inputs(self, inputs: dict):
        """The output head's input (B, L, H) from one no-grad forward."""
        import torch

        captured = {}
        handle = self.head.register_forward_pre_hook(lambda _m, args: captured.update(h=args[0]))
        try:
            with torch.no_grad():
                self.runtime.model(**inputs)
        finally:
            handle.remove()
        return captured["h"]

    def gradients(self, encodings: list) -> object:
        """(n, D) per-row gradients of ℓ over the chosen subset, rows in input order."""
        import torch

        out = [None] * len(encodings)
        for group in self._groups(encodings):
            if self.head_path:
                batch = collate([encodings[i] for i in group], self.runtime.processor, "right")
                hidden = self._head_inputs(self._inputs(batch))
                labels = batch.labels.to(self.runtime.device)
                grads = head_grads(self.head, hidden, labels, self.grad_dtype)
            else:
                batches = [collate([encodings[i]], self.runtime.processor) for i in group]
                inputs = [self._inputs(b) for b in batches]
                labels = [b.labels.to(self.runtime.device) for b in batches]
                grads = loop_grads(self.runtime.model, self.names, inputs, labels)
            for k, i in enumerate(group):
                out[i] = grads[k]
        return torch.stack(out)

    def _project(self, grads):
        return grads if self.projection is None else self.projection(grads.float())

    def _step(self, flat) -> dict:
        """θ − η g over the chosen subset, g flattened in `self.names` order."""
        out, start = {}, 0
        for name in self.names:
            theta = self.theta[name]
            size = theta.numel()
            step = flat[start : start + size].reshape(theta.shape).to(self.grad_dtype)
            moved = theta.to(self.grad_dtype) - self.config.eta * step
            out[name] = moved if self.head_path else moved.to(theta.dtype)  # model's dtype
            start += size
        return out

    def utilities(self, encodings: list) -> np.ndarray:
        """OST utility of each encoded row (float64), in the configured form."""
        grads = self.gradients(encodings)
        if self.config.form == "first_order":
            dots = self._project(grads) @ self.target_grad.to(grads.device)
            return self.config.eta * dots.double().cpu().numpy()
        return np.array([self.base_loss - self.target_loss(self._step(g)) for g in grads])

    # --- batches ----------------------------------------------------------------------------

    def _encode(self, rows: list[dict]) -> tuple[list, list]:
        """Encodings (None where failed) and reasons (None where encoded)."""
        inputs = self.runtime.config.inputs
        media, errors = [None] * len(rows), [None] * len(rows)
        for i, row in enumerate(rows):
            if row.get("score_error") is not None:
                errors[i] = "upstream: the row failed an earlier score step"
                continue
            try:
                media[i] = decode_media(row, inputs.num_frames)
            except MediaError as error:
                errors[i] = f"media: {error}"
        ready = [i for i in range(len(rows)) if errors[i] is None]
        encoded = encode_many(
            self.runtime.processor, [rows[i] for i in ready], [media[i] for i in ready], inputs
        )
        encodings = [None] * len(rows)
        for i, result in zip(ready, encoded, strict=True):
            if isinstance(result, RowError):
                errors[i] = f"{result.reason}: {result}"
            else:
                encodings[i] = result
        return encodings, errors

    def _score(self, rows: list[dict]) -> tuple[np.ndarray, list]:
        encodings, errors = self._encode(rows)
        ok = [i for i in range(len(rows)) if errors[i] is None]
        values = np.full(len(rows), np.nan)
        if ok:
            values[ok] = self.utilities([encodings[i] for i in ok])
        self.counts.update(total=len(rows), scored=len(ok))
        self.counts.update(e.split(":")[0] for e in errors if e is not None)
        return values, errors

    def __call__(self, batch):
        """Add `ost_utility` (float64, null where not scored) and `ost_error` (string) to a
        pyarrow Table (input schema kept) or a dict of NumPy arrays."""
        if isinstance(batch, pa.Table):
            values, errors = self._score(batch.to_pylist())
            table = batch.drop_columns(
                [c for c in ("ost_utility", "ost_error") if c in batch.column_names]
            )
            table = table.append_column(
                "ost_utility", pa.array(values, pa.float64(), mask=np.isnan(values))
            )
            return table.append_column("ost_error", pa.array(errors, pa.string()))
        values, errors = self._score(batch_rows(batch))
        return {**batch, "ost_utility": values, "ost_error": np.array(errors, dtype=object)}
