"""The evaluation figures of every system, drawn with matplotlib (the field's standard).

Figures are made with `matplotlib.figure.Figure` and the Agg canvas directly, never through
pyplot, so no backend is switched and nothing needs a display. Every function writes a PNG and
returns the drawn image as uint8 (H, W, 3).

- `box_plot(scores, path, ...)`: one box per method of a score distribution (NIMA Figure 6):
  quartile box, median line, Tukey whiskers (1.5 IQR), outliers, the mean as a diamond, and
  "mean ± std" under each method's name.
- `line_plot(series, path, ...)`: one line per series against the iteration or step (PIEA's
  NIMA score per iteration); `draw_lines(axes, ...)` draws the same into an existing axes.
- `bar_plot(groups, path, ...)`: grouped bars with error bars (PieNet's Figure 6);
  `scatter_plot(points, path, ...)`: 2-D points by group with a star each (PieNet's Figure 8).
- `side_by_side(images, path)`: photos at full size left to right, each under its name.
- `piea_figure(original, result, index)`: PIEA's Figure 4 (the adjustments made in words, the
  score curve against the input's score, the photo after selected iterations). It lives here, not in
  `enhancers.piea_report`, because packages layer datasets, nima -> losses -> enhancers ->
  tools: enhancers may not import tools, and the score curve is this module's line plot.
"""
import os
import textwrap
import uuid

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from datasets.images import to_uint8
from enhancers import filters, piea_report

__all__ = ["bar_plot", "box_plot", "draw_lines", "line_plot", "piea_figure", "scatter_plot",
           "side_by_side"]

DPI = 100
_MEAN_COLOUR = "#1e8c3c"


def _new_figure(width, height):
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def wrap_title(title, width):
    """`title` broken into lines that fit a figure `width` pixels wide (about 8 pixels a
    character at matplotlib's default title size), so that a narrow plot does not cut it."""
    return textwrap.fill(str(title), max(16, int(width) // 8))


def _pixels(figure):
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def _write_atomic(path, write):
    """Calls write(tmp) for a temporary file next to `path`, then renames it to `path`."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex}.png")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _finish(figure, path):
    """The figure's pixels; with a path, matplotlib writes them as PNG there."""
    pixels = _pixels(figure)
    if path is not None:
        _write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))
    return pixels


def box_plot(scores, path, *, title="NIMA scores", ylabel="NIMA mean score", width=None,
             height=480):
    """Box plots of score distributions, one per method, in the order of `scores`.

    Args:
      scores: an ordered mapping method name -> non-empty sequence of finite scores.
      path: the PNG to write (folders created), or None to only draw.
      title, ylabel: texts of the figure.
      width, height: in pixels; `width` defaults to 160 + 150 per method.

    Returns:
      The image, uint8 (height, width, 3).
    """
    scores = {name: np.asarray(values, np.float64).ravel() for name, values in scores.items()}
    if not scores:
        raise ValueError("no score distributions to plot")
    for name, values in scores.items():
        if values.size == 0 or not np.all(np.isfinite(values)):
            raise ValueError(f"{name}: a box plot needs finite scores, got {values.tolist()}")
    width = 160 + 150 * len(scores) if width is None else int(width)
    figure = _new_figure(width, int(height))
    axes = figure.add_subplot()
    axes.boxplot(list(scores.values()), whis=1.5, showmeans=True, patch_artist=True,
                 medianprops={"color": "black", "linewidth": 2},
                 meanprops={"marker": "D", "markerfacecolor": _MEAN_COLOUR,
                            "markeredgecolor": "black"},
                 boxprops={"facecolor": "#96b9e1"})
    axes.set_xticks(range(1, len(scores) + 1),
                    [f"{name}\n{values.mean():.3f} \u00b1 {values.std():.3f}"
                     for name, values in scores.items()])
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(axis="y", color="0.9")
    axes.set_axisbelow(True)
    figure.tight_layout()
    return _finish(figure, path)


def draw_lines(axes, series, *, xlabel="iteration", ylabel="NIMA mean score", title=None,
               markers=True):
    """Draws each sequence of `series` (name -> values at x = 0, 1, ...) as a line on `axes`;
    a legend when there is more than one."""
    for name, values in series.items():
        values = np.asarray(values, np.float64)
        axes.plot(np.arange(len(values)), values, marker="o" if markers else None,
                  markersize=3, linewidth=1.5, label=name)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if title:
        axes.set_title(title)
    axes.grid(color="0.9")
    axes.xaxis.get_major_locator().set_params(integer=True)
    if len(series) > 1:
        axes.legend(fontsize="small")


def line_plot(series, path, *, title="NIMA mean score per iteration", xlabel="iteration",
              ylabel="NIMA mean score", width=640, height=400):
    """Line plot of one or more score sequences against the iteration (`draw_lines`); writes
    the PNG `path` (or only draws with None) and returns the uint8 (height, width, 3) image."""
    series = dict(series)
    if not series or not all(len(values) for values in series.values()):
        raise ValueError("no scores to plot")
    figure = _new_figure(int(width), int(height))
    draw_lines(figure.add_subplot(), series, xlabel=xlabel, ylabel=ylabel, title=title,
               markers=max(len(v) for v in series.values()) <= 60)
    figure.tight_layout()
    return _finish(figure, path)


def bar_plot(groups, path, *, title="", ylabel="", width=None, height=420):
    """Grouped bars with error bars (PieNet's Figure 6: PSNR per N_pref and scheme).

    Args:
      groups: an ordered mapping group label (an x position, e.g. "N=10") -> an ordered mapping
        series name (e.g. the scheme) -> (mean, spread); every group has the same series.
      path: the PNG to write (folders created), or None to only draw.
    Returns the uint8 (height, width, 3) image.
    """
    groups = {label: dict(series) for label, series in groups.items()}
    if not groups:
        raise ValueError("no bars to plot")
    names = list(next(iter(groups.values())))
    for label, series in groups.items():
        if list(series) != names:
            raise ValueError(f"group {label!r} has series {list(series)}, expected {names}")
    width = 200 + 60 * len(groups) * len(names) if width is None else int(width)
    figure = _new_figure(width, int(height))
    axes = figure.add_subplot()
    step = 0.8 / len(names)
    positions = np.arange(len(groups))
    for index, name in enumerate(names):
        means = [groups[label][name][0] for label in groups]
        spreads = [groups[label][name][1] for label in groups]
        axes.bar(positions + (index - (len(names) - 1) / 2) * step, means, step * 0.9,
                 yerr=spreads, capsize=3, label=name)
    axes.set_xticks(positions, list(groups))
    axes.set_ylabel(ylabel)
    axes.set_title(wrap_title(title, width))
    values = [m for series in groups.values() for m, _ in series.values()]
    spread = max(s for series in groups.values() for _, s in series.values())
    low, high = min(values) - spread, max(values) + spread
    margin = max(0.1 * (high - low), 1e-3)
    axes.set_ylim(low - margin, high + margin)  # differences matter, not distances from 0
    axes.grid(axis="y", color="0.9")
    axes.set_axisbelow(True)
    if len(names) > 1:
        axes.legend(fontsize="small")
    figure.tight_layout()
    return _finish(figure, path)


def scatter_plot(points, path, *, marked=None, title="", xlabel="", ylabel="", width=560,
                 height=480):
    """2-D points coloured by group, each group's marked point (if any) a large star in its
    colour (PieNet's Figure 8: photos' embeddings and the users' preference vectors).

    Args:
      points: an ordered mapping group name -> (n, 2) array.
      marked: None or a mapping group name -> (2,) point.
    Returns the uint8 (height, width, 3) image.
    """
    if not points:
        raise ValueError("no points to plot")
    figure = _new_figure(int(width), int(height))
    axes = figure.add_subplot()
    for index, (name, values) in enumerate(points.items()):
        values = np.asarray(values, np.float64).reshape(-1, 2)
        colour = f"C{index % 10}"
        axes.scatter(values[:, 0], values[:, 1], s=14, color=colour, alpha=0.7, label=name)
        if marked and name in marked:
            x, y = np.asarray(marked[name], np.float64)
            axes.scatter([x], [y], s=260, marker="*", color=colour, edgecolors="black",
                         linewidths=1.0, zorder=3)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(wrap_title(title, width))
    axes.grid(color="0.9")
    axes.set_axisbelow(True)
    axes.legend(fontsize="small", markerscale=1.5)
    figure.tight_layout()
    return _finish(figure, path)


# --------------------------------------------------------------------------- photo strips


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_width(draw, text, font):
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def side_by_side(images, path=None):
    """Same-height photos at full size, left to right in the order of `images` (name -> float
    (h, w, 3) in [0, 1] or uint8), each under its name on a band above the photos (font 1/30 of
    the photo height, at least 13 px unless the names need less), a white gap of max(4, w // 100)
    px between them. Pillow, not matplotlib: the photos must keep their pixels. Writes the PNG
    `path` if given; returns the uint8 image."""
    names = list(images)
    pixels = [to_uint8(images[name]) for name in names]
    h, w = pixels[0].shape[:2]
    if any(p.shape[0] != h for p in pixels):
        raise ValueError(f"side by side needs photos of one height, got "
                         f"{[p.shape[:2] for p in pixels]}")
    gap = max(4, w // 100)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    size = max(13, h // 30)
    while size > 6 and max(_text_width(measure, n, _font(size)) for n in names) > w - 8:
        size -= 1  # small photos: the names must not run into the next panel
    font = _font(size)
    band = size + 12
    canvas = Image.new("RGB", (sum(p.shape[1] for p in pixels) + (len(names) - 1) * gap,
                               h + band), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for name, panel in zip(names, pixels):
        draw.text((x + 4, 4), name, fill=(20, 20, 20), font=font)
        canvas.paste(Image.fromarray(panel), (x, band))
        x += panel.shape[1] + gap
    result = np.asarray(canvas)
    if path is not None:
        _write_atomic(path, lambda tmp: canvas.save(tmp, format="PNG"))
    return result


# --------------------------------------------------------------------------- PIEA Figure 4


def piea_figure(original, result, index, *, thumbnail_height=180, iterations=None, path=None):
    """PIEA's Figure 4 for photo `index` of a `enhancers.piea.PieaResult`: uint8 (H, W, 3).

    Top left, the photo's summary (`enhancers.piea_report.summary_lines`: the input's score and
    the returned photo's, which candidate was returned and why, the filters that moved away
    from identity in a photographer's units, warnings; Figure 4, left); below it the NIMA
    score at every iteration (`draw_lines`) against the input's score, the returned candidate
    marked; on the right the input and the photo after the iterations in `iterations`
    (default: five evenly spaced from 0 to M, `enhancers.piea_report.shown_iterations`, plus
    the returned iterate) with their scores, re-rendered from the recorded parameters (Figure
    4, right: "the progressive enhancing process"). `original` is the unprocessed input
    (h, w, 3) in [0, 1]. Writes the PNG `path` if given.
    """
    iterations = (piea_report.shown_iterations(result.iterations) if iterations is None
                  else list(iterations))
    chosen = result.selected_iterations[index]
    if chosen is not None and chosen not in iterations:
        iterations = sorted(iterations + [chosen])
    scores = np.asarray(result.scores[index], np.float64)
    input_score = float(result.input_scores[index])
    original = np.asarray(original, np.float32)
    panels = [(f"input\nS = {input_score:.2f}" + ("\n(returned)" if chosen is None else ""),
               original)]
    for t in iterations:
        params = {name: value[np.newaxis] for name, value in
                  result.photo_parameters(index, t).items()}
        rendered = np.asarray(filters.apply(original[np.newaxis], params))[0]
        panels.append((f"iteration {t}\nS = {scores[t]:.2f}"
                       + ("\n(returned)" if t == chosen else ""), np.clip(rendered, 0, 1)))
    lines = [wrapped for line in piea_report.summary_lines(result, index)
             for wrapped in textwrap.wrap(line, 80, subsequent_indent="     ")]

    aspect = original.shape[1] / original.shape[0]
    strip_width = len(panels) * (thumbnail_height * aspect + 16)
    text_width = 460
    height = max(thumbnail_height + 120, 60 + 17 * len(lines) + 260)
    figure = _new_figure(int(text_width + strip_width + 48), int(height))
    width = figure.get_figwidth() * DPI
    left_fraction = text_width / width
    figure.text(16 / width, 1 - 16 / height, "Interpretable adjusting strategy",
                fontsize=12, weight="bold", va="top")
    figure.text(16 / width, 1 - 44 / height, "\n".join(lines), fontsize=8, va="top",
                linespacing=1.45)
    curve = figure.add_axes((56 / width, 44 / height, left_fraction - 72 / width,
                             200 / height))
    draw_lines(curve, {"S": scores}, ylabel="NIMA mean score",
               title="NIMA mean score per iteration")
    curve.axhline(input_score, color="0.4", linestyle="--", linewidth=1)
    curve.annotate("input", (0, input_score), fontsize=7, color="0.3",
                   xytext=(2, 2), textcoords="offset points")
    if chosen is not None:
        curve.plot([chosen], [scores[chosen]], marker="o", markersize=7, fillstyle="none",
                   color="C3")
    figure.text((text_width + 32) / width, 1 - 16 / height,
                f"Progressive enhancement: NIMA score {input_score:.2f} (input) -> "
                f"{result.output_scores[index]:.2f} (returned)",
                fontsize=12, weight="bold", va="top")
    panel_width = (strip_width / len(panels) - 16) / width
    for k, (label, image) in enumerate(panels):
        x = (text_width + 32) / width + k * strip_width / len(panels) / width
        axes = figure.add_axes((x, 1 - (48 + thumbnail_height) / height, panel_width,
                                thumbnail_height / height))
        axes.imshow(image, interpolation="lanczos")
        axes.set_axis_off()
        figure.text(x, 1 - (56 + thumbnail_height) / height, label, fontsize=9, va="top")
    return _finish(figure, path)
