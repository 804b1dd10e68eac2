"""Short chat conversations shared by the scorer tests and the engine tests (one definition).

Single and multi-turn, with a system turn, and one empty response (the last).
"""

from __future__ import annotations

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Give three tips for staying healthy."},
     {"role": "assistant", "content": "Eat a balanced diet, exercise regularly and sleep well."},
     {"role": "user", "content": "And one more?"},
     {"role": "assistant", "content": "Drink water."}],
    [{"role": "user", "content": "Write a short poem about the sea, please, with a few lines about the wind."},
     {"role": "assistant", "content": "The sea is wide, the waves are blue, the wind is singing songs for you."}],
    [{"role": "user", "content": "Translate 'good morning' into Spanish."}, {"role": "assistant", "content": ""}],
]  # fmt: skip
