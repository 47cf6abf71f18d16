"""A tiny randomly initialised Llama with a byte-level tokenizer and a ChatML template, for tests (no network)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from workbench import paths

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges: every UTF-8 byte is a token, plus the three ChatML special tokens."""
    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({char: len(SPECIAL_TOKENS) + i for i, char in enumerate(byte_chars)})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<|endoftext|>", additional_special_tokens=list(SPECIAL_TOKENS),
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    # Round-trip through a folder so the tokenizer has a ``name_or_path`` like any hub/local tokenizer (libraries
    # such as TransformerLens re-load tokenizers from it).
    folder = paths.cache_dir() / "tiny-tokenizer"
    if not (folder / "tokenizer.json").exists():
        with tempfile.TemporaryDirectory(dir=paths.cache_dir()) as staging:
            tokenizer.save_pretrained(staging)
            try:
                Path(staging).rename(folder)
            except OSError:  # another process won the race; theirs is identical
                pass
            Path(staging).mkdir(exist_ok=True)  # TemporaryDirectory cleanup expects it
    return AutoTokenizer.from_pretrained(folder)


def tiny_llama(vocab_size: int, *, n_layers: int = 2, d_model: int = 64, seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=d_model, intermediate_size=4 * d_model, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
        pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    return model
