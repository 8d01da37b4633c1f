import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lfd13 import plotting  # noqa: E402
from lfd13.train import History  # noqa: E402


def teardown_function():
    plt.close("all")


def test_use_style_sets_palette():
    plotting.use_style()
    assert matplotlib.rcParams["axes.spines.top"] is False
    assert matplotlib.rcParams["axes.prop_cycle"].by_key()["color"][0] == plotting.PALETTE[0]


@pytest.mark.parametrize("shape", [(6, 8, 8), (6, 1, 8, 8), (6, 3, 8, 8)])
def test_image_grid_accepts_common_layouts(shape):
    fig = plotting.image_grid(torch.rand(shape), ncols=4, titles=[str(i) for i in range(6)])
    assert len(fig.axes) == 8  # 2 rows x 4 columns
    assert len(fig.axes[0].images) == 1 and len(fig.axes[7].images) == 0


def test_image_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, 1\|3, H, W\]"):
        plotting.image_grid(torch.rand(2, 5, 8, 8))
    with pytest.raises(ValueError, match="no images"):
        plotting.image_grid(torch.rand(0, 8, 8))


def test_plot_history_draws_one_line_per_run():
    h = History()
    for i in range(1, 51):
        h.record(i, i * 0.1, {"loss": 1.0 / i})
    ax = plotting.plot_history({"a": h, "b": h}, smooth=5)
    assert len(ax.lines) == 2 and ax.get_legend() is not None
    assert len(ax.lines[0].get_xdata()) == 50


def test_bar_chart_labels_and_reference():
    ax = plotting.bar_chart({"a": 0.5, "b": 0.75}, errors={"a": 0.1}, reference=0.1, ylabel="acc")
    assert [t.get_text() for t in ax.texts] == ["0.50", "0.75"]
    assert ax.get_ylabel() == "acc" and len(ax.lines) >= 1


def test_label_curve_is_log_scaled():
    ax = plotting.plot_label_curve({"x": ([1, 10, 100], [0.5, 0.7, 0.9], [0.1, 0.05, 0.0])})
    assert ax.get_xscale() == "log"


def test_similarity_matrix_checks_shape():
    ax = plotting.similarity_matrix(torch.eye(3), row_labels=list("abc"), col_labels=list("abc"), annotate=True)
    assert len(ax.texts) == 9
    with pytest.raises(ValueError, match="2-D"):
        plotting.similarity_matrix(torch.rand(3))
