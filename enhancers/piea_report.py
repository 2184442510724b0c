"""PIEA's interpretable outputs: the JSON recipe and a figure like the paper's Figure 4.

- `recipe(result, index, ...)`: a JSON-ready dict for one photo of a `PieaResult`: the filter
  order, the final parameters of every filter in words and numbers, the NIMA score at every
  iteration and every filter's parameters at every iteration (the "interpretable adjusting
  strategy", PIEA section 4.3). Its "parameters" entry is exactly the natural-unit dict that
  `enhancers.filters.apply` takes, so `replay(image, recipe)` re-renders the enhanced photo.
- `figure(original, result, index)`: an RGB uint8 image with, on the left, each filter's final
  parameters (Figure 4, left) and the score curve, and on the right the input and the photo
  after selected iterations with their scores (Figure 4, right: "the progressive enhancing
  process").

Drawn with Pillow only (no plotting library needed).
"""
import json

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from enhancers import filters

RECIPE_FORMAT = "piea-recipe/1"


def recipe(result, index, *, source=None, nima=None, settings=None):
    """The JSON-ready recipe of photo `index` of `result` (module docstring).

    `source` (the input file), `nima` (which NIMA guided it) and `settings` (iterations,
    learning rate, ...) are recorded as given.
    """
    final = result.photo_parameters(index)
    final_json = filters.to_jsonable(final)
    scores = [float(s) for s in result.scores[index]]
    return {
        "format": RECIPE_FORMAT,
        "method": "PIEA (Du et al., ICMR 2019), filters of EXPOSURE (Hu et al. 2018)",
        "source": source,
        "nima": nima,
        "settings": settings or {},
        "filter_order": list(filters.FILTER_NAMES),
        "steps": [
            {"filter": f.name, "title": f.title, "in_words": f.describe(final[f.name]),
             "parameters": final_json[f.name]}
            for f in filters.FILTERS
        ],
        "parameters": final_json,
        "score_before": scores[0],
        "score_after": scores[-1],
        "scores": scores,
        "parameters_per_iteration": [
            filters.to_jsonable(result.photo_parameters(index, t))
            for t in range(result.iterations + 1)
        ],
    }


def recipe_json(recipe_dict):
    return json.dumps(recipe_dict, indent=2) + "\n"


def replay(image, recipe_dict):
    """Renders float (h, w, 3) `image` with a recipe's final parameters; returns (h, w, 3)."""
    params = filters.from_jsonable(recipe_dict["parameters"])
    batched = {name: np.asarray(value, np.float32)[np.newaxis] for name, value in params.items()}
    enhanced = filters.apply(np.asarray(image, np.float32)[np.newaxis], batched)
    return np.clip(np.asarray(enhanced)[0], 0.0, 1.0)


# --------------------------------------------------------------------------- the figure

_BACKGROUND = (255, 255, 255)
_INK = (20, 20, 20)
_GRID = (210, 210, 210)
_CURVE = (200, 60, 40)
_MARGIN = 16


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def shown_iterations(iterations, count=5):
    """Up to `count` evenly spaced iterations from 0 to `iterations`, both included."""
    return sorted({int(round(t)) for t in np.linspace(0, iterations, min(count, iterations + 1))})


def _thumbnail(image, height):
    pixels = Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8))
    width = max(1, round(pixels.width * height / pixels.height))
    return pixels.resize((width, height), Image.Resampling.LANCZOS)


def _wrap(draw, text, font, width):
    """`text` broken at spaces into lines at most `width` pixels wide; continuations indented."""
    lines, current = [], ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and draw.textlength(candidate, font=font) > width:
            lines.append(current)
            candidate = "     " + word
        current = candidate
    return lines + [current]


def _score_curve(draw, box, scores, font):
    """Draws S against the iteration inside `box` (left, top, right, bottom)."""
    left, top, right, bottom = box
    plot = (left + 44, top + 24, right - 8, bottom - 28)
    draw.text((left, top), "NIMA mean score per iteration", fill=_INK, font=font)
    low, high = float(np.min(scores)), float(np.max(scores))
    pad = max(0.05, 0.1 * (high - low))
    low, high = low - pad, high + pad
    steps = len(scores) - 1

    def point(t, s):
        x = plot[0] + (plot[2] - plot[0]) * (t / max(steps, 1))
        y = plot[3] - (plot[3] - plot[1]) * (s - low) / (high - low)
        return x, y

    draw.rectangle(plot, outline=_GRID)
    for value in np.linspace(low + pad, high - pad, 3):
        _, y = point(0, value)
        draw.line((plot[0], y, plot[2], y), fill=_GRID)
        draw.text((left, y - 7), f"{value:.2f}", fill=_INK, font=font)
    for t in shown_iterations(steps):
        x, _ = point(t, low)
        draw.text((x - 6, plot[3] + 6), str(t), fill=_INK, font=font)
    points = [point(t, s) for t, s in enumerate(scores)]
    if len(points) > 1:
        draw.line(points, fill=_CURVE, width=2)
    for x, y in points:
        draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=_CURVE)


def figure(original, result, index, *, thumbnail_height=180, iterations=None):
    """Figure 4 for photo `index` of `result`: uint8 (H, W, 3) (module docstring).

    `original` is the unprocessed input (h, w, 3) in [0, 1]; the photos after the iterations in
    `iterations` (default: five evenly spaced from 0 to M) are re-rendered from the recorded
    parameters, so any iteration can be shown.
    """
    font, title_font = _font(13), _font(16)
    iterations = shown_iterations(result.iterations) if iterations is None else list(iterations)
    scores = result.scores[index]
    panels = [("input", _thumbnail(original, thumbnail_height))]
    for t in iterations:
        params = {name: value[np.newaxis] for name, value in
                  result.photo_parameters(index, t).items()}
        rendered = np.asarray(filters.apply(np.asarray(original, np.float32)[np.newaxis], params))
        panels.append((f"iteration {t}: S = {scores[t]:.2f}",
                       _thumbnail(rendered[0], thumbnail_height)))

    text_width = 430
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = []
    for number, line in enumerate(filters.describe(result.photo_parameters(index)), 1):
        lines.extend(_wrap(measure, f"{number}. {line}", font, text_width))
    strip_width = sum(p.width for _, p in panels) + _MARGIN * (len(panels) - 1)
    width = _MARGIN * 3 + text_width + strip_width
    height = _MARGIN * 2 + max(30 + 20 * len(lines) + 230, 30 + thumbnail_height + 24)
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    x0 = _MARGIN
    draw.text((x0, _MARGIN), "Interpretable adjusting strategy", fill=_INK, font=title_font)
    y = _MARGIN + 30
    for line in lines:
        draw.text((x0, y), line, fill=_INK, font=font)
        y += 20
    _score_curve(draw, (x0, y + 10, x0 + text_width, y + 220), scores, font)

    x = _MARGIN * 2 + text_width
    draw.text((x, _MARGIN),
              f"Progressive enhancement: NIMA score {scores[0]:.2f} -> {scores[-1]:.2f}",
              fill=_INK, font=title_font)
    for label, panel in panels:
        canvas.paste(panel, (x, _MARGIN + 30))
        draw.text((x, _MARGIN + 34 + thumbnail_height), label, fill=_INK, font=font)
        x += panel.width + _MARGIN
    return np.asarray(canvas)
