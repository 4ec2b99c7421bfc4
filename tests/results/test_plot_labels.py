from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from effvit_nas.results.plots import separate_labels


def _overlapping(fig, labels) -> int:
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in labels]
    return sum(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_labels_of_nearby_points_end_apart():
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    # M3/M4-like: five labels on almost the same point
    labels = [ax.annotate(f"M{i}", (5.0 + 0.01 * i, 5.0), textcoords="offset points", xytext=(5, -10)) for i in range(5)]
    assert _overlapping(fig, labels) > 0  # the problem, before
    assert separate_labels(fig, labels) == 0
    assert _overlapping(fig, labels) == 0


def test_a_title_names_a_supernet_proxy_by_its_folder():
    # private: the label alone; checking it through a rendered plot would read pixels
    from effvit_nas.results.plots import _shown_proxy

    assert _shown_proxy("supernet:/work/x/results/supernet/sn64-lr2e-3") == "supernet:sn64-lr2e-3"
    assert _shown_proxy("train") == "train"
