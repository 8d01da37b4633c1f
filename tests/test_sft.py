"""Tests for lfd13.sft: generated demonstrations, prompt masking, the tiny GPT-2, generation and exact match."""

import pytest
import torch
import torch.nn.functional as F

from lfd13 import sft
from lfd13.train import Recipe


@pytest.fixture(scope="module")
def tok():
    return sft.CharTokenizer()


def test_tokenizer_round_trip(tok):
    text = "reverse:abcXYZ09>"
    ids = tok.encode(text)
    assert min(ids) >= 2 and tok.decode(ids) == text
    assert tok.decode(ids + [tok.eos_id] + ids) == text
    assert tok.decode([tok.pad_id] + ids) == text
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("a b")


def test_tasks_and_examples():
    assert sft.make_prompt("reverse", "abc") == "reverse:abc>"
    assert [sft.TASKS[t]("cab") for t in ("reverse", "upper", "length", "sort")] == ["bac", "CAB", "3", "abc"]
    exs = sft.make_examples(200, seed=0, min_len=3, max_len=5)
    assert exs == sft.make_examples(200, seed=0, min_len=3, max_len=5)
    assert {e.prompt.split(":")[0] for e in exs} == set(sft.TASKS)
    for e in exs:
        task, word = e.prompt.split(":")[0], sft.word_of(e)
        assert 3 <= len(word) <= 5 and e.response == sft.TASKS[task](word)
    held_out = {sft.word_of(e) for e in exs[:50]}
    train = sft.make_examples(300, seed=1, min_len=3, max_len=5, exclude=held_out)
    assert not held_out & {sft.word_of(e) for e in train}
    with pytest.raises(ValueError, match="unknown tasks"):
        sft.make_examples(3, seed=0, tasks=("translate",))


def test_prompt_masking(tok):
    exs = [sft.Example("upper:ab>", "AB"), sft.Example("length:abcd>", "4")]
    ids, mask, labels = sft.encode_examples(exs, tok, mask_prompt=True)
    assert ids.shape == mask.shape == labels.shape == (2, 14)
    # first example: 9 prompt characters, "AB", [EOS], then padding
    assert (labels[0, :9] == sft.IGNORE_INDEX).all()
    assert labels[0, 9:12].tolist() == tok.encode("AB") + [tok.eos_id]
    assert (labels[0, 12:] == sft.IGNORE_INDEX).all() and mask[0].sum() == 12
    _, _, full = sft.encode_examples(exs, tok, mask_prompt=False)
    assert full[0, :12].tolist() == ids[0, :12].tolist() and (full[0, 12:] == sft.IGNORE_INDEX).all()
    # only response tokens are scored: the library loss equals cross-entropy on those positions
    model = sft.tiny_gpt(tok, sft.TinyGPTConfig(n_layer=1, n_embd=16, n_head=2), seed=0)
    loss = sft.lm_step(model, (ids, mask, labels))
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    ref = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=sft.IGNORE_INDEX)
    torch.testing.assert_close(loss, ref)


def test_lm_step_drops_unused_padding(tok):
    # a batch padded far beyond its longest row gives the loss of the tightly padded batch
    exs = [sft.Example("upper:ab>", "AB"), sft.Example("sort:cab>", "abc")]
    ids, mask, labels = sft.encode_examples(exs, tok, mask_prompt=True)
    extra = 9
    wide = (F.pad(ids, (0, extra), value=tok.pad_id), F.pad(mask, (0, extra)), F.pad(labels, (0, extra), value=sft.IGNORE_INDEX))
    model = sft.tiny_gpt(tok, sft.TinyGPTConfig(n_layer=1, n_embd=16, n_head=2), seed=0)
    torch.testing.assert_close(sft.lm_step(model, wide), sft.lm_step(model, (ids, mask, labels)))


def test_tiny_gpt_config(tok):
    model = sft.tiny_gpt(tok, seed=0)
    assert model.config.n_layer == 2 and model.config.n_embd == 128 and model.config.vocab_size == tok.vocab_size
    again = sft.tiny_gpt(tok, seed=0)
    torch.testing.assert_close(model.transformer.wte.weight, again.transformer.wte.weight)


def test_generation_matches_unpadded_greedy(tok):
    model = sft.tiny_gpt(tok, sft.TinyGPTConfig(n_layer=1, n_embd=32, n_head=2), seed=3)
    prompts = ["sort:ab>", "reverse:abcdefg>"]
    batched = sft.generate(model, prompts, tok, max_new_tokens=5, device="cpu")
    for prompt, out in zip(prompts, batched):
        ids = torch.tensor([tok.encode(prompt)])
        chars = []
        for _ in range(5):
            logits = model(input_ids=ids).logits[0, -1]
            logits[tok.pad_id] = float("-inf")
            nxt = int(logits.argmax())
            if nxt == tok.eos_id:
                break
            chars.append(tok.decode([nxt]))
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
        assert out == "".join(chars)


def test_training_learns_and_exact_match(tok):
    config = Recipe(steps=40, lr=3e-3, batch_size=32, warmup=5, weight_decay=0.01, betas=(0.9, 0.98), max_grad_norm=1.0)
    exs = sft.make_examples(256, seed=0, tasks=("upper",), min_len=2, max_len=3)
    model = sft.tiny_gpt(tok, sft.TinyGPTConfig(n_layer=1, n_embd=32, n_head=2), seed=0)
    history = sft.train_sft(model, exs, tok, config, seed=0, device="cpu")
    assert history.last("loss", 5) < history["loss"][0] - 1.0  # from ~ln V towards the letters' entropy
    scores = sft.exact_match(model, exs[:20], tok, device="cpu")
    outputs = sft.generate(model, [e.prompt for e in exs[:20]], tok, device="cpu")
    assert set(scores) == {"all", "upper"}
    assert scores["all"] == scores["upper"] == sum(o == e.response for o, e in zip(outputs, exs[:20])) / 20
    perfect = sft.exact_match(model, [sft.Example(e.prompt, r) for e, r in
                                      zip(exs[:20], sft.generate(model, [e.prompt for e in exs[:20]], tok, device="cpu"))], tok, device="cpu")
    assert perfect["all"] == 1.0
    with pytest.raises(ValueError, match="n_positions"):
        sft.train_sft(sft.tiny_gpt(tok, sft.TinyGPTConfig(n_layer=1, n_embd=16, n_head=2, n_positions=4)), exs, tok, sft.SFT_TINY)
