"""Verifiable rewards: values on answers of each kind the synthetic pool asks for."""

from __future__ import annotations

from training.rewards import (
    accuracy_reward,
    extract_answer,
    format_reward,
    normalize_answer,
    numeric_match,
)


def test_accuracy_reward_by_answer_kind():
    completions = ["Red.", "the red", "green", "B", "(B)", "b", "C", "7", "7.0", "8", "seven"]
    answers = ["red", "red", "red", "B", "B", "B", "B", "7", "7", "7", "7"]
    expected = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    assert accuracy_reward(completions, answers) == expected


def test_chat_completions_and_answer_tags():
    chat = [[{"role": "assistant", "content": "<think>it moves</think><answer>Left</answer>"}]]
    assert accuracy_reward(chat, ["left"]) == [1.0]
    assert format_reward(chat) == [1.0]
    assert format_reward(["left", "<answer>left</answer>", "<think></think>"]) == [0.0] * 3
    assert extract_answer("no tags at all ") == "no tags at all"


def test_normalization_and_tolerance():
    assert normalize_answer(" An  Apple! ") == "apple"
    assert numeric_match("100.5", "100") and not numeric_match("102", "100")
    assert numeric_match("0.005", "0") and not numeric_match("x", "1")
