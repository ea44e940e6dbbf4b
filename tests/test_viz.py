"""Plot and table helpers (scriptlab.viz) against hand-written expected output."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from scriptlab import viz


def test_text_table_matches_hand_formatted_lines():
    rows = [
        {"model": "baseline", "method": "gradient", "ink_mass": 0.2214, "lift": 1.94},
        {"model": "unlearn", "method": "grad_cam", "ink_mass": 0.21, "lift": 11.5},
    ]
    columns = [("model", "model", "9s"), ("method", "method", "21s"),
               ("ink mass", "ink_mass", "8.2f"), ("lift", "lift", "5.2f")]  # fmt: skip
    expected = [
        f"{'model':9s} {'method':21s} {'ink mass':>8s} {'lift':>5s}",
        f"{'baseline':9s} {'gradient':21s} {0.2214:8.2f} {1.94:5.2f}",
        f"{'unlearn':9s} {'grad_cam':21s} {0.21:8.2f} {11.5:5.2f}",
    ]
    assert viz.text_table(rows, columns) == "\n".join(expected)
    assert viz.text_table(rows, columns, header=False) == "\n".join(expected[1:])
    assert viz.text_table([], columns) == expected[0]


def test_abs_scaled_divides_by_the_maximum_and_keeps_zero_maps():
    np.testing.assert_allclose(
        viz.abs_scaled(np.array([[-2.0, 1.0], [0.0, 0.5]])), [[1, 0.5], [0, 0.25]]
    )
    np.testing.assert_array_equal(viz.abs_scaled(np.zeros((2, 3))), np.zeros((2, 3)))


def test_image_grid_layout_labels_and_colormaps():
    rgb, grey = np.random.default_rng(0).random((4, 8, 3)), np.zeros((4, 8))
    fig = viz.image_grid(
        [[rgb, grey, grey], [rgb, grey, grey]],
        row_labels=["a", "b"],
        col_titles=["crop", "ink", "grad_cam"],
        cmaps=(None, "gray", "inferno"),
        cell=(2.0, 1.0),
        suptitle="model",
    )
    axes = np.array(fig.axes).reshape(2, 3)
    assert tuple(fig.get_size_inches()) == (6.0, 2.0)
    assert [ax.get_title() for ax in axes[0]] == ["crop", "ink", "grad cam"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["a", "b"]
    assert axes[1, 1].images[0].get_cmap().name == "gray"
    assert axes[1, 2].images[0].get_cmap().name == "inferno"
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in axes.ravel())
    assert fig._suptitle.get_text() == "model"
    plt.close(fig)


def test_style_sets_readable_sizes_and_constrained_layout():
    with matplotlib.rc_context():
        viz.style(**{"figure.dpi": 96})
        assert plt.rcParams["figure.dpi"] == 96
        assert plt.rcParams["figure.constrained_layout.use"]
        sizes = [plt.rcParams[k] for k in viz.STYLE if k.endswith("size")]
        assert sizes and min(sizes) >= viz.SMALL


def test_busy_shows_a_status_line_until_the_callback_draws(monkeypatch, capsys):
    import inspect

    import ipywidgets
    from IPython import display

    events = []
    monkeypatch.setattr(
        display,
        "clear_output",
        lambda wait=False: events.append(("clear", wait, capsys.readouterr().out)),
    )

    def draw(crop=3, layer="conv2"):
        events.append(("draw", crop, layer))
        return crop * 2

    wrapped = viz.busy(draw, message="scoring ...")
    assert inspect.signature(wrapped) == inspect.signature(draw)
    assert wrapped(crop=5) == 10
    # the line is out before the (deferred) clear, and the clear comes before the callback runs
    assert events == [("clear", True, "scoring ...\n"), ("draw", 5, "conv2")]
    ui = ipywidgets.interactive(wrapped, crop=(0, 9), layer=["conv1", "conv2"])
    assert [(w._kwarg, w.value) for w in ui.kwargs_widgets] == [("crop", 3), ("layer", "conv2")]
    events.clear()
    assert viz.busy()(draw)(7, "conv1") == 14  # @busy, default message
    assert events == [("clear", True, "computing ...\n"), ("draw", 7, "conv1")]
    events.clear()  # when: the line only for the moves it names (here: crop above 5)
    slow_only = viz.busy(draw, message="new crop ...", when=lambda crop, layer: crop > 5)
    assert slow_only(crop=2) == 4 and slow_only(9, layer="conv1") == 18 and slow_only() == 6
    assert events == [
        ("draw", 2, "conv2"),
        ("clear", True, "new crop ...\n"),
        ("draw", 9, "conv1"),
        ("draw", 3, "conv2"),
    ]
    with pytest.raises(TypeError, match="fn must be a callable, got int"):
        viz.busy(3)
    with pytest.raises(TypeError, match="when must be a callable, got str"):
        viz.busy(draw, when="always")


def test_cached_computes_each_key_once_even_when_asked_twice_at_once():
    import threading
    import time

    calls = []
    gate = threading.Event()

    def slow_square(k):
        calls.append(k)
        if k == 3:
            gate.wait(5)  # hold key 3 until the main thread asks for it too
        if k == "bad":
            raise ValueError("no square of 'bad'")
        return k * k

    cached = viz.Cached(slow_square)
    thread = cached.prefetch([3, 4, "bad"])
    assert thread.name == viz.Cached.THREAD and thread.daemon
    while 3 not in calls:
        time.sleep(0.01)
    asker = threading.Thread(target=lambda: calls.append(("got", cached[3])))
    asker.start()  # blocks on key 3's lock while the prefetch thread computes it
    time.sleep(0.05)
    gate.set()
    asker.join(5)
    thread.join(5)
    assert cached[3] == 9 and cached[4] == 16 and 4 in cached and "bad" not in cached
    assert calls.count(3) == 1 and calls.count(4) == 1 and ("got", 9) in calls
    assert isinstance(cached.errors["bad"], ValueError)
    with pytest.raises(ValueError, match="no square of 'bad'"):  # asked again: raised here
        cached["bad"]
    assert cached[5] == 25 and calls[-1] == 5  # on demand, in the caller
    with pytest.raises(TypeError, match="fn must be a callable key -> value, got dict"):
        viz.Cached({})


def test_exit_stops_prefetching_and_waits_for_the_key_in_flight(tmp_path):
    """A script that exits while a prefetch thread computes in XLA exits cleanly (a daemon
    thread stopped inside XLA aborts the process: "FATAL: exception not rethrown", rc 134),
    after the key in flight and without starting the rest."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "exit_while_prefetching.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            import jax.numpy as jnp
            from scriptlab import viz

            def slow(key):
                x = jnp.ones((500, 500))
                for _ in range(30):
                    x = jnp.tanh(x @ x / 500)
                x.block_until_ready()
                print("computed", key, flush=True)
                return x

            viz.Cached(slow).prefetch(range(50))
            time.sleep(0.3)
            print("exiting", flush=True)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "FATAL" not in out.stderr and "terminate called" not in out.stderr
    lines = out.stdout.splitlines()
    assert "exiting" in lines
    after = lines[lines.index("exiting") + 1 :]
    assert len(after) <= 1, after  # at most the key in flight finishes after the exit began
    assert len(lines) < 50  # the rest never started


def test_attribution_limits_are_shared_and_signed_on_request():
    maps = np.stack([np.full((4, 8), -3.0), np.full((4, 8), 1.0)])
    assert viz.attribution_limits(maps, signed=True, percentile=100) == (-3.0, 3.0)
    assert viz.attribution_limits(maps, percentile=100) == (0.0, 3.0)
    # a high percentile keeps one hot pixel from washing out the rest
    hot = np.ones((10, 10))
    hot[0, 0] = 1000.0
    assert viz.attribution_limits(hot, percentile=98) == (0.0, 1.0)
    assert viz.attribution_limits(np.zeros((2, 2)))[1] > 0
    with pytest.raises(ValueError, match="percentile must be in"):
        viz.attribution_limits(maps, percentile=0)


def test_image_grid_shares_limits_per_column_and_draws_signed_colourbars():
    rgb = np.random.default_rng(0).random((4, 8, 3))
    neg, pos = np.full((4, 8), -0.5), np.full((4, 8), 0.25)
    fig = viz.image_grid(
        [[rgb, neg, pos], [rgb, pos, neg]],
        col_titles=["crop", "gradient", "ig"],
        cmaps=(None, viz.SIGNED_CMAP, viz.ABS_CMAP),
        vlims=[None, (-1.0, 1.0), (0.0, 0.5)],
        colorbar_label="{title} (score per pixel)",
    )
    image_axes = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    axes = np.array(image_axes).reshape(2, 3)
    assert axes[0, 1].images[0].get_clim() == axes[1, 1].images[0].get_clim() == (-1.0, 1.0)
    assert axes[1, 2].images[0].get_clim() == (0.0, 0.5)
    # a signed map keeps its sign: -0.5 is drawn below the middle of the diverging scale
    assert axes[0, 1].images[0].norm(-0.5) == 0.25
    assert axes[0, 1].images[0].get_cmap().name == "RdBu_r"
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert sorted(b.get_xlabel() for b in bars) == [
        "gradient (score per pixel)",
        "ig (score per pixel)",
    ]
    plt.close(fig)
    with pytest.raises(ValueError, match="vlims must be one"):
        viz.image_grid([[neg, pos]], vlims=[(0, 1)] * 3)


def test_image_grid_with_one_shared_scale_draws_one_colourbar():
    grey = np.linspace(0, 1, 32).reshape(4, 8)
    fig = viz.image_grid(
        [[grey, grey], [grey, 2 * grey]], vlims=(0.0, 1.0), colorbar_label="pixel rank"
    )
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert [b.get_ylabel() for b in bars] == ["pixel rank"]
    image_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert {ax.images[0].get_clim() for ax in image_axes} == {(0.0, 1.0)}
    plt.close(fig)


def test_image_grid_titles_every_panel():
    panels = [[np.zeros((4, 6, 3)), np.ones((4, 6, 3))], [np.zeros((4, 6, 3))] * 2]
    fig = viz.image_grid(panels, col_titles=["a", "b"], panel_titles=[["q", "n1"], ["r", "n2"]])
    axes = np.array(fig.axes).reshape(2, 2)
    assert [[ax.get_title() for ax in row] for row in axes] == [["q", "n1"], ["r", "n2"]]
    plt.close(fig)
