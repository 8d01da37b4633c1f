"""Tests for lfd13.sft: demonstrations, prompt masking and weighting, corpus windows, the character GPT-2, generation
(transformers' ``generate`` against a plain greedy loop), exact match, and the shipped pre-trained model."""

import pytest
import torch
import torch.nn.functional as F

from lfd13.experiments.charlm_pretraining import clean_text, corpus_blocks
from lfd13 import sft
from lfd13.experiments import charlm_pretraining
from lfd13.runtime import IGNORE_INDEX, UnknownPresetError
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
    assert tok.decode(tok.encode("the cat, said 'no!'")) == "the cat, said 'no!'"
    assert tok.vocab_size == len(sft.CHARS) + 2 and set(sft.TASK_CHARS) <= set(tok.chars)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("a~b")


def test_clean_text_and_corpus_blocks(tok):
    assert clean_text("\u201cNo,\u201d  she said \u2014 it\u2019s [1] _here_") == "\"No,\" she said - it's 1 here"
    ids, mask, labels = corpus_blocks(["abcdefgh", "xyz"], tok, block=4, stride=2)
    stream = tok.encode("abcdefgh") + [tok.eos_id] + tok.encode("xyz") + [tok.eos_id]  # 13 ids
    assert ids.shape == mask.shape == labels.shape == (5, 4) and bool(mask.all()) and torch.equal(ids, labels)
    assert ids[0].tolist() == stream[:4] and ids[1].tolist() == stream[2:6] and ids[-1].tolist() == stream[8:12]
    assert corpus_blocks(["abcdefgh"], tok, block=4)[0].shape == (2, 4)  # no overlap by default
    with pytest.raises(ValueError, match="fewer than one block"):
        corpus_blocks(["ab"], tok, block=8)


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
    assert (labels[0, :9] == IGNORE_INDEX).all()
    assert labels[0, 9:12].tolist() == tok.encode("AB") + [tok.eos_id]
    assert (labels[0, 12:] == IGNORE_INDEX).all() and mask[0].sum() == 12
    _, _, full = sft.encode_examples(exs, tok, mask_prompt=False)
    assert full[0, :12].tolist() == ids[0, :12].tolist() and (full[0, 12:] == IGNORE_INDEX).all()
    # only response tokens are scored: the library loss equals cross-entropy on those positions
    model = sft.build_char_gpt(sft.CharGPTConfig(n_layer=1, n_embd=16, n_head=2), seed=0)
    loss = sft.lm_step(model, (ids, mask, labels))
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    ref = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(loss, ref)


def test_sft_loss_weightings_agree_with_the_library_loss(tok):
    exs = [sft.Example("upper:ab>", "AB"), sft.Example("length:abcd>", "4"), sft.Example("sort:cab>", "abc")]
    model = sft.build_char_gpt(sft.CharGPTConfig(n_layer=1, n_embd=16, n_head=2), seed=0).eval()
    data = sft.sft_data(exs, tok)
    ids, mask, labels, response = data
    _, _, masked = sft.encode_examples(exs, tok, mask_prompt=True)
    assert torch.equal(response, masked != IGNORE_INDEX) and torch.equal(labels, sft.encode_examples(exs, tok, mask_prompt=False)[2])
    hf_response = sft.lm_step(model, (ids, mask, masked))
    hf_every = sft.lm_step(model, (ids, mask, labels))
    out = {name: sft.sft_step(model, data, loss=loss) for name, loss in
           [("resp", sft.RESPONSE_ONLY), ("every", sft.EVERY_TOKEN), ("per_resp", sft.EVERY_TOKEN_PER_RESPONSE)]}
    torch.testing.assert_close(out["resp"]["loss"], hf_response)  # response only = the LM head's loss on masked labels
    torch.testing.assert_close(out["every"]["loss"], hf_every)  # every token, mean = the LM head's loss on all labels
    n_scored, n_response = int((labels[:, 1:] != IGNORE_INDEX).sum()), int(response[:, 1:].sum())
    assert n_response == 3 + 2 + 4  # each response and its [EOS]
    torch.testing.assert_close(out["per_resp"]["loss"], hf_every * n_scored / n_response)
    for o in out.values():  # the logged means do not depend on the weighting
        torch.testing.assert_close(o["response_loss"], hf_response)
    n_prompt = n_scored - n_response
    torch.testing.assert_close(out["resp"]["prompt_loss"], (hf_every * n_scored - hf_response * n_response) / n_prompt)
    half = sft.sft_step(model, data, loss=sft.SFTLoss(prompt_weight=0.5, per_response_token=False))["loss"]
    expected = (hf_response * n_response + 0.5 * out["resp"]["prompt_loss"] * n_prompt) / (n_response + 0.5 * n_prompt)
    torch.testing.assert_close(half, expected)
    with pytest.raises(ValueError, match="prompt_weight"):
        sft.SFTLoss(prompt_weight=-1.0)


def test_held_out_loss(tok):
    data = corpus_blocks(["the cat sat on the mat. " * 8], tok, block=12)
    model = sft.build_char_gpt(sft.CharGPTConfig(n_layer=1, n_embd=16, n_head=2, n_positions=12), seed=0)
    torch.testing.assert_close(charlm_pretraining.held_out_loss(model, data, batch_size=3, device="cpu"), float(sft.lm_step(model, data).detach()))


def test_lm_step_drops_unused_padding(tok):
    # a batch padded far beyond its longest row gives the loss of the tightly padded batch
    exs = [sft.Example("upper:ab>", "AB"), sft.Example("sort:cab>", "abc")]
    ids, mask, labels = sft.encode_examples(exs, tok, mask_prompt=True)
    extra = 9
    wide = (F.pad(ids, (0, extra), value=tok.pad_id), F.pad(mask, (0, extra)), F.pad(labels, (0, extra), value=IGNORE_INDEX))
    model = sft.build_char_gpt(sft.CharGPTConfig(n_layer=1, n_embd=16, n_head=2), seed=0)
    torch.testing.assert_close(sft.lm_step(model, wide), sft.lm_step(model, (ids, mask, labels)))


def test_build_char_gpt_presets_and_seed(tok):
    model = sft.build_char_gpt("gpt-nano-char", seed=0)
    assert model.config.n_layer == 2 and model.config.n_embd == 128 and model.config.vocab_size == tok.vocab_size
    assert (model.config.eos_token_id, model.config.pad_token_id) == (tok.eos_id, tok.pad_id)
    again, other = sft.build_char_gpt(seed=0), sft.build_char_gpt(seed=1)
    torch.testing.assert_close(model.transformer.wte.weight, again.transformer.wte.weight)
    assert not torch.equal(model.transformer.wte.weight, other.transformer.wte.weight)
    assert sft.build_char_gpt("gpt-pico-char", seed=0, n_positions=12).config.n_positions == 12
    assert sft.build_char_gpt(sft.CharGPTConfig(chars="ab"), seed=0).config.vocab_size == 4
    with pytest.raises(UnknownPresetError, match="gpt-nano-char"):
        sft.build_char_gpt("gpt-huge-char", seed=0)


def _greedy_one_by_one(model, prompt, tok, max_new_tokens):
    """The reference: one prompt, no padding, no cache; the most likely character except [PAD], until [EOS]."""
    ids = torch.tensor([tok.encode(prompt)])
    chars = []
    for _ in range(min(max_new_tokens, model.config.n_positions - ids.shape[1])):
        logits = model(input_ids=ids).logits[0, -1]
        logits[tok.pad_id] = float("-inf")
        nxt = int(logits.argmax())
        if nxt == tok.eos_id:
            break
        chars.append(tok.decode([nxt]))
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return "".join(chars)


@pytest.mark.parametrize("seed", [0, 3])
def test_generation_matches_unpadded_greedy(tok, seed):
    # a left-padded batch of prompts of different lengths gives what each prompt alone gives
    model = sft.build_char_gpt(sft.CharGPTConfig(n_layer=1, n_embd=32, n_head=2, n_positions=24), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # larger weights than GPT-2's init, so that the output depends on the context
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3, generator=gen)
        # [PAD] would win wherever "a" does: only its suppression keeps it out of the answers
        model.transformer.wte.weight[tok.pad_id] = 1.2 * model.transformer.wte.weight[tok.encode("a")[0]]
    prompts = ["sort:ab>", "reverse:abcdefg>", "upper:x>", "length:abcd>"]
    batched = sft.generate(model, prompts, tok, max_new_tokens=6, device="cpu")
    assert batched == [_greedy_one_by_one(model, p, tok, 6) for p in prompts]
    # the positions run out: 21 prompt characters leave 3, 24 leave none
    assert sft.generate(model, ["length:abcdefghijklm>"], tok, device="cpu") == [_greedy_one_by_one(model, "length:abcdefghijklm>", tok, 3)]
    assert sft.generate(model, ["length:abcdefghijklmnop>"], tok, device="cpu") == [""]


def test_training_learns_and_exact_match(tok):
    config = Recipe(steps=40, lr=3e-3, batch_size=32, warmup=5, weight_decay=0.01, betas=(0.9, 0.98), max_grad_norm=1.0)
    exs = sft.make_examples(256, seed=0, tasks=("upper",), min_len=2, max_len=3)
    model = sft.build_char_gpt(sft.CharGPTConfig(n_layer=1, n_embd=32, n_head=2), seed=0)
    evaluate = lambda m: {"exact": sft.exact_match(m, exs[:20], tok, device="cpu")["all"]}  # noqa: E731
    history = sft.train_sft(model, exs, tok, config, seed=0, device="cpu", evaluate=evaluate, eval_every=20)
    assert history.last("loss", 5) < history["loss"][0] - 1.0  # from ~ln V towards the letters' entropy
    assert history["loss"] == history["response_loss"] and [s for s, _ in history.evals["exact"]] == [20, 40]
    scores = sft.exact_match(model, exs[:20], tok, device="cpu")
    outputs = sft.generate(model, [e.prompt for e in exs[:20]], tok, device="cpu")
    # the trained model ends its answers with [EOS]: generate stops there, as the plain greedy loop does
    assert outputs == [_greedy_one_by_one(model, e.prompt, tok, 10) for e in exs[:20]]
    assert any(len(o) < 10 for o in outputs)
    assert set(scores) == {"all", "upper"}
    assert scores["all"] == scores["upper"] == sum(o == e.response for o, e in zip(outputs, exs[:20])) / 20
    perfect = sft.exact_match(model, [sft.Example(e.prompt, r) for e, r in
                                      zip(exs[:20], sft.generate(model, [e.prompt for e in exs[:20]], tok, device="cpu"))], tok, device="cpu")
    assert perfect["all"] == 1.0
    with pytest.raises(ValueError, match="n_positions"):
        sft.train_sft(sft.build_char_gpt(sft.CharGPTConfig(n_layer=1, n_embd=16, n_head=2, n_positions=4), seed=0), exs, tok, Recipe(steps=2, lr=1e-3, batch_size=8))


def test_shipped_pretrained_model(tok):
    model, tokenizer, info = sft.load_char_gpt()
    assert info.name == sft.PRETRAINED and tokenizer.chars == sft.CHARS
    measured = charlm_pretraining.load()
    assert measured.held_out_bits_per_char < measured.unigram_bits_per_char  # it learnt more than character frequencies
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in sft.build_char_gpt(seed=0).parameters())


def test_gradient_parts_and_copy_ratio_of_a_uniform_model(tok):
    import math

    from lfd13.experiments.sft_comparison import copy_ratio, gradient_parts

    model = sft.build_char_gpt("gpt-pico-char", seed=0)
    with torch.no_grad():
        model.transformer.wte.weight.zero_()  # tied to the LM head: every logit 0, every prediction uniform
    examples = sft.make_examples(32, seed=3)
    parts = gradient_parts(model, examples, tok)
    assert parts["letter_loss"] == pytest.approx(math.log(tok.vocab_size), rel=1e-5)
    assert math.isfinite(parts["prompt_share"]) and -1 <= parts["cosine"] <= 1
    assert copy_ratio(model, examples, tok) == pytest.approx(1.0, rel=1e-5)
    assert all(p.grad is None for p in model.parameters())  # measured with autograd.grad: nothing left for the optimiser
