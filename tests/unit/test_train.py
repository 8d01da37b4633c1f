import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfd13.train import (
    History,
    Recipe,
    build_optimizer,
    classification_step,
    fit,
    param_groups,
    progress_enabled,
    seconds_per_step,
    tensor_batches,
    train,
    trim_padding,
    warmup_cosine,
)


def _toy(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return x, y


def _step(model, batch):
    x, y = batch
    logits = model(x)
    return {"loss": F.cross_entropy(logits, y), "acc": (logits.argmax(-1) == y).float().mean()}


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(4, 2)


def test_fit_learns_and_records_history():
    x, y = _toy()
    model = _model()
    h = fit(model, (x, y), _step, optimizer=torch.optim.SGD(model.parameters(), lr=0.5), steps=60, batch_size=16, device="cpu")
    assert isinstance(h, History) and len(h) == 60
    assert h.step == list(range(1, 61))
    assert h.last("loss", 10) < h["loss"][0]
    assert h.last("acc", 10) > 0.9
    assert all(b >= a for a, b in zip(h.seconds, h.seconds[1:]))
    assert set(h.to_dict()) == {"step", "seconds", "metrics", "evals"}
    with pytest.raises(KeyError, match="recorded"):
        h["nope"]


def test_fit_is_deterministic_for_a_seed():
    x, y = _toy()
    runs = []
    for _ in range(2):
        model = _model()
        fit(model, (x, y), _step, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), steps=20, batch_size=8, seed=3, device="cpu")
        runs.append(model.weight.detach().clone())
    model = _model()
    fit(model, (x, y), _step, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), steps=20, batch_size=8, seed=4, device="cpu")
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], model.weight.detach())


def test_epochs_count_batches_and_dataloader_works():
    x, y = _toy(n=40)
    model = _model()
    h = fit(model, (x, y), _step, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=3, batch_size=10, device="cpu")
    assert len(h) == 12
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    h = fit(model, loader, _step, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=2, device="cpu")
    assert len(h) == 10


def test_evaluate_callback_and_scheduler():
    x, y = _toy()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []
    h = fit(
        model, (x, y), _step, optimizer=opt, steps=10, batch_size=16, device="cpu",
        scheduler=warmup_cosine(opt, warmup=2, total=10),
        evaluate=lambda m: {"val": float(m.training)}, eval_every=5,
        callbacks=[lambda s, m: seen.append(s)],
    )
    assert h.evals["val"] == [(5, 0.0), (10, 0.0)]  # evaluated in eval mode
    assert seen == list(range(1, 11))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_bad_input_raises_clear_errors():
    x, y = _toy()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="exactly one of steps= or epochs="):
        fit(model, (x, y), _step, optimizer=opt, device="cpu")
    with pytest.raises(ValueError, match="same first dimension"):
        fit(model, (x, y[:10]), _step, optimizer=opt, steps=1, device="cpu")
    with pytest.raises(TypeError, match="loss tensor or a mapping"):
        fit(model, (x, y), lambda m, b: 1.0, optimizer=opt, steps=1, device="cpu")
    with pytest.raises(ValueError, match="scalar"):
        fit(model, (x, y), lambda m, b: m(b[0]).sum(-1), optimizer=opt, steps=1, device="cpu")
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(model, (x, y), lambda m, b: m(b[0]).sum() * float("nan"), optimizer=opt, steps=1, device="cpu")
    with pytest.raises(TypeError, match="data must be"):
        fit(model, 3, _step, optimizer=opt, steps=1, device="cpu")


def test_tensor_batches_cover_each_epoch_once():
    x = torch.arange(10)
    stream = tensor_batches((x,), batch_size=5, generator=torch.Generator().manual_seed(0))
    epoch = torch.cat([next(stream)[0] for _ in range(2)])
    assert sorted(epoch.tolist()) == list(range(10))


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("LFD13_PROGRESS", "0")
    assert progress_enabled() is False
    monkeypatch.setenv("LFD13_PROGRESS", "1")
    assert progress_enabled() is True
    assert progress_enabled(False) is False


def test_trim_padding_cuts_to_the_longest_row():
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    ids = torch.arange(10).view(2, 5)
    labels = -torch.ones(2, 5, dtype=torch.long)
    m, i, lab = trim_padding(mask, ids, labels)
    assert m.tolist() == [[1, 1, 0], [1, 1, 1]] and i.tolist() == [[0, 1, 2], [5, 6, 7]] and lab.shape == (2, 3)


def test_fit_leaves_the_global_generator_alone():
    x, y = _toy()
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))  # dropout draws from the global generator
    torch.manual_seed(123)
    state = torch.get_rng_state()
    fit(model, (x, y), _step, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), steps=5, batch_size=8, seed=0, device="cpu")
    assert torch.equal(torch.get_rng_state(), state)


def test_param_groups_decay_matrices_and_embeddings_only():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4), nn.Conv1d(4, 4, 3))
    model.register_parameter("scale", nn.Parameter(torch.zeros(())))
    model[1].bias.requires_grad_(False)  # frozen parameters are left out
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "1.weight", "3.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == ["2.bias", "2.weight", "3.bias", "scale"]
    with pytest.raises(ValueError, match="no trainable"):
        param_groups(nn.Linear(2, 2).requires_grad_(False), 0.1)


def test_train_follows_the_recipe():
    x, y = _toy()
    model = _model()
    recipe = Recipe(steps=30, lr=0.5, batch_size=16, warmup=5, weight_decay=0.01)
    h = train(model, (x, y), classification_step, recipe, seed=0, device="cpu")
    assert len(h) == 30 and h.last("acc", 5) > 0.9
    optimizer, scheduler = build_optimizer(_model(), recipe)
    assert optimizer.defaults["betas"] == recipe.betas
    lrs = []
    for _ in range(recipe.steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[recipe.warmup - 1] == pytest.approx(recipe.lr) and lrs[0] == pytest.approx(recipe.lr / recipe.warmup)
    assert lrs[-1] < 0.01 * recipe.lr
    with pytest.raises(ValueError, match="lr"):
        Recipe(steps=10, lr=0.0)


def test_seconds_per_step_times_the_step():
    model = _model()
    calls = []

    def loss_fn(m, i):
        calls.append(i)
        x, y = _toy(seed=i, n=8)
        return F.cross_entropy(m(x), y)

    seconds = seconds_per_step(model, loss_fn, steps=3, repeats=2, device="cpu")
    assert calls == [0, 1, 2, 3, 0, 1, 2, 3]  # one warm-up step per repeat
    assert seconds > 0


def test_warmup_cosine_is_transformers_schedule_one_step_ahead():
    """The same warm-up and cosine as transformers', except that the first step already has ``lr / warmup``."""
    from transformers import get_cosine_schedule_with_warmup

    from lfd13.optim import warmup_cosine

    def rates(make, steps=12):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched, out = make(opt), []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    ours = rates(lambda o: warmup_cosine(o, warmup=4, total=12))
    theirs = rates(lambda o: get_cosine_schedule_with_warmup(o, num_warmup_steps=4, num_training_steps=12))
    assert ours[:4] == [0.25, 0.5, 0.75, 1.0] and theirs[:4] == [0.0, 0.25, 0.5, 0.75]
    assert ours[4:] == pytest.approx(theirs[4:], abs=1e-12)  # the cosine part is the same
