"""Per-sample quantities from a VLM's outputs: answer-token NLL, teacher-forced correctness,
and attention mass on vision vs text positions. Pure tensor functions, so each is checked
against a by-hand reference in tests and shared by descriptors and training evaluation.
"""

from __future__ import annotations

import torch

from operators.vlm_inputs import IGNORE_INDEX

__all__ = ["answer_nll", "attention_mass_ratios", "word_jaccard"]

EPS = 1e-6


def answer_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean NLL over the answer tokens, and whether greedy decoding gives them.

    logits: (B, L, V) and labels: (B, L) with IGNORE_INDEX outside the answer. Position t
    predicts token t + 1. `correct` is True when the argmax at every answer position is the
    answer token: greedy generation reproduces the answer (through its end-of-turn token)
    exactly when this holds, so one forward pass decides it (ARCHITECTURE.md section 6).
    Rows without answer tokens get NaN and False.
    """
    shift_logits = logits[:, :-1].float()  # (B, L-1, V)
    shift_labels = labels[:, 1:]  # (B, L-1)
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.clamp(min=0)
    logp = torch.log_softmax(shift_logits, dim=-1)
    token_nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, L-1)
    count = mask.sum(dim=1)
    nll = (token_nll * mask).sum(dim=1) / count.clamp(min=1)
    nll = torch.where(count > 0, nll, torch.full_like(nll, float("nan")))
    hits = (shift_logits.argmax(-1) == safe) | ~mask
    correct = hits.all(dim=1) & (count > 0)
    return nll, correct


def attention_mass_ratios(
    attentions: tuple[torch.Tensor, ...],
    vision_mask: torch.Tensor,
    attention_mask: torch.Tensor,
    query_mask: torch.Tensor,
) -> torch.Tensor:
    """Per layer and query token: attention mass on vision keys / mass on text keys.

    attentions: one (B, H, L, L) tensor per layer (eager attention), heads averaged here.
    vision_mask, attention_mask, query_mask: (B, L). Text keys are the non-vision, non-pad
    positions. Returns (B, num_layers, L) with NaN at positions that are not queries.
    """
    stacked = torch.stack([a.float().mean(dim=1) for a in attentions], dim=1)  # (B, N, L, L)
    keys_vision = (vision_mask & attention_mask.bool()).float()  # (B, L)
    keys_text = (~vision_mask & attention_mask.bool()).float()
    on_vision = torch.einsum("bnqk,bk->bnq", stacked, keys_vision)  # (B, N, L)
    on_text = torch.einsum("bnqk,bk->bnq", stacked, keys_text)
    ratio = on_vision / on_text.clamp(min=EPS)
    nan = torch.full_like(ratio, float("nan"))
    return torch.where(query_mask.bool().unsqueeze(1), ratio, nan)


def word_jaccard(a: str, b: str) -> float:
    """Jaccard similarity of the lower-cased word sets of two texts (1.0 when both are empty).

    >>> word_jaccard("the red cube", "a red cube")
    0.5
    """
    sa, sb = set(a.lower().split()), set(b.lower().split())
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
