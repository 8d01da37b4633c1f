import pytest
import torch

from lfd13.pretrained import DEFAULT_TEXT_ENCODER, hub_offline, load_text_encoder, mean_pool, packaged_path


def test_tests_run_offline():
    assert hub_offline(), "the test suite must run with HF_HUB_OFFLINE=1"


def test_packaged_copy_is_found():
    path = packaged_path(DEFAULT_TEXT_ENCODER)
    assert path is not None and (path / "model.safetensors").is_file()
    assert packaged_path("bert-base-uncased") is None


@pytest.fixture(scope="module")
def encoder():
    return load_text_encoder(device="cpu")


def test_loads_real_minilm_offline(encoder):
    tokenizer, model = encoder
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert not model.training
    # real pretrained weights, not a random init: known statistics of the embedding table
    emb = model.get_input_embeddings().weight
    assert emb.shape == (30522, 384)
    assert 0.02 < float(emb.detach().std()) < 0.2


def test_gives_a_meaningful_embedding(encoder):
    tokenizer, model = encoder
    sentences = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply today."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    e = torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1)
    assert e.shape == (3, 384)
    sim = e @ e.T
    # the two paraphrases are far closer to each other than to the unrelated sentence
    assert sim[0, 1] > 0.4 and sim[0, 1] > sim[0, 2] + 0.3


def test_unknown_name_lists_what_was_tried():
    with pytest.raises(OSError) as info:
        load_text_encoder("no-such-org/no-such-model", device="cpu")
    msg = str(info.value)
    assert "local Hugging Face cache" in msg and "packaged copy" in msg and "HF_HUB_OFFLINE" in msg
    assert "Fix:" in msg


def test_bad_name_and_mask_shape():
    with pytest.raises(ValueError, match="hub name"):
        load_text_encoder("  ")
    with pytest.raises(ValueError, match="disagree"):
        mean_pool(torch.rand(2, 3, 4), torch.ones(2, 4))


def test_a_folder_that_is_not_a_model_gets_the_tried_report(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(OSError, match=r"(?s)Tried:.*the folder.*save_pretrained"):
        load_text_encoder(str(tmp_path), device="cpu")
