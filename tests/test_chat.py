import pytest

from workbench.chat import ASSISTANT, ASSISTANT_HEADER, SPECIAL, TEMPLATE, encode_chat, render_prompt


def test_flags_mark_template_and_content(tiny):
    messages = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}]
    enc = encode_chat(tiny.tokenizer, messages)
    assert len(enc.input_ids) == len(enc.flags)
    tok = tiny.tokenizer
    # every special token is flagged special+template; content tokens decode back to the message texts
    for token_id, flag in zip(enc.input_ids, enc.flags):
        if token_id in tok.all_special_ids:
            assert flag & SPECIAL and flag & TEMPLATE
    user = tok.decode([i for i, f in zip(enc.input_ids, enc.flags) if not f & TEMPLATE and not f & ASSISTANT])
    reply = tok.decode([i for i, f in zip(enc.input_ids, enc.flags) if f & ASSISTANT])
    assert user == "What is 2+2?" and reply == "It is 4."
    header = tok.decode([i for i, f in zip(enc.input_ids, enc.flags) if f & ASSISTANT_HEADER])
    assert header == "<|im_start|>assistant\n"


def test_generation_prompt_header(tiny):
    enc = encode_chat(tiny.tokenizer, [{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert enc.flags[-1] & ASSISTANT_HEADER
    assert render_prompt(tiny.tokenizer, "hi") == enc.text


def test_no_template_is_a_clear_error(tiny):
    import copy

    tok = copy.deepcopy(tiny.tokenizer)
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        encode_chat(tok, [{"role": "user", "content": "x"}])
