"""Tiny local Hugging Face models for tests and benchmarks: no hub download, random weights, seconds to build.

Import it from any test (``from tiny_models import build_causal_lm``; ``tests/`` is on ``sys.path``):

- :func:`make_tokenizer`: a byte-level BPE trained on a small built-in corpus (plus any texts you pass),
  wrapped in ``PreTrainedTokenizerFast``; with a ChatML chat template or without one;
- :func:`build_causal_lm`: a Llama (``arch="llama"``, ChatML template, BOS/EOS/PAD) or GPT-2
  (``arch="gpt2"``, no chat template, ``<|endoftext|>`` as BOS/EOS, no PAD) saved with its tokenizer;
- :func:`build_reward_model`: ``LlamaForSequenceClassification`` with ``num_labels=1`` and a pad token.

Everything is seeded, so the same call builds the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "Give three tips for staying healthy. Eat a balanced diet, exercise regularly and sleep well.",
    "What is the capital of France? The capital of France is Paris.",
    "Write a short poem about the sea. The sea is wide, the waves are blue, the wind is singing songs for you.",
    "Explain why the sky is blue. Sunlight is scattered by the air; blue light is scattered the most.",
    "Add 2 and 3. The answer is 5. Multiply 4 by 6: 24. Count: 1 2 3 4 5 6 7 8 9 10.",
    "Summarize the text below in one sentence. The report describes sales growth in 2023.",
    "Translate 'good morning' into Spanish. Buenos dias.",
    "You are a helpful assistant. Please identify the complexity score of the following user query.",
    "Please identify the quality score of the Response corresponding to the Question. ##Quality: 4",
    "def add(a, b):\n    return a + b\n\nprint(add(1, 2))",
    "The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with one step.",
]


def make_tokenizer(
    *, chat_template: bool = True, vocab_size: int = 512, texts: list[str] | None = None, gpt2_style: bool = False
) -> Any:
    """A trained byte-level BPE in ``PreTrainedTokenizerFast``.

    ``gpt2_style`` uses ``<|endoftext|>`` as BOS and EOS and sets no pad token; otherwise ``<s>``, ``</s>``,
    ``<pad>`` plus the ChatML markers as special tokens.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>"] if gpt2_style else ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4 + list(texts or []), trainer)
    if gpt2_style:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    else:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    if chat_template:
        fast.chat_template = CHATML_TEMPLATE
    return fast


def build_causal_lm(
    path: str | Path,
    *,
    arch: str = "llama",
    chat_template: bool | None = None,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    vocab_size: int = 512,
    max_positions: int = 512,
    texts: list[str] | None = None,
    seed: int = 0,
) -> Path:
    """Save a random tiny causal LM and its tokenizer to ``path`` (Llama: ChatML template; GPT-2: none)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    gpt2 = arch == "gpt2"
    tok = make_tokenizer(
        chat_template=(not gpt2) if chat_template is None else chat_template,
        vocab_size=vocab_size,
        texts=texts,
        gpt2_style=gpt2,
    )
    torch.manual_seed(seed)
    if gpt2:
        cfg = GPT2Config(
            vocab_size=len(tok), n_embd=hidden_size, n_layer=num_layers, n_head=num_heads, n_positions=max_positions,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        )  # fmt: skip
        model = GPT2LMHeadModel(cfg)
    else:
        model = LlamaForCausalLM(_llama_config(LlamaConfig, tok, hidden_size, num_layers, num_heads,
                                               intermediate_size, max_positions))  # fmt: skip
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_reward_model(path: str | Path, *, hidden_size: int = 64, num_layers: int = 2, seed: int = 0) -> Path:
    """Save a random ``LlamaForSequenceClassification`` (``num_labels=1``, pad token set) and its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = make_tokenizer(chat_template=True)
    torch.manual_seed(seed)
    cfg = _llama_config(LlamaConfig, tok, hidden_size, num_layers, 4, 2 * hidden_size, 512)
    cfg.num_labels = 1
    model = LlamaForSequenceClassification(cfg)
    path = Path(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_tiny_bert(path: str | Path, *, num_layers: int = 1, max_positions: int = 128, seed: int = 0) -> Path:
    """Save a random ``BertModel`` (hidden 32, 2 heads, FFN 64) and its tokenizer (no chat template)."""
    import torch
    from transformers import BertConfig, BertModel

    tok = make_tokenizer(chat_template=False)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=max_positions,
                     pad_token_id=tok.pad_token_id)  # fmt: skip
    path = Path(path)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _llama_config(cls, tok, hidden, layers, heads, inter, positions):
    return cls(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads, intermediate_size=inter, max_position_embeddings=positions,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )  # fmt: skip
