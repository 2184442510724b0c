"""PIEA's interpretable outputs: the JSON recipe and a figure like the paper's Figure 4.

- `recipe(result, index, ...)`: a JSON-ready dict for one photo of a `PieaResult` (written as
  strict JSON by `tools.report.strict_dumps`): the NIMA score of the input as given
  ("score_before") and of the returned photo ("score_after"), which candidate was returned and
  why, the adjustments made (only the filters that moved away from identity, in a
  photographer's units: `enhancers.filters.adjustments`), any warnings, the NIMA score at every
  iteration and every filter's parameters at every iteration (the "interpretable adjusting
  strategy", PIEA section 4.3). Its "parameters" entry is exactly the natural-unit dict that
  `enhancers.filters.apply` takes, so `replay(image, recipe)` re-renders the returned photo (to
  within 1/255 when it is the input).
- `summary_lines(result, index)`: the same in a few lines of text, for logs and the figure.
- `shown_iterations(iterations)`: the iterations Figure 4 shows.

Figure 4 itself (the filters' final parameters in words, the score curve, the photo after the
shown iterations) is drawn by `tools.figures.piea_figure` with matplotlib: packages layer
enhancers -> tools, so enhancers may not import tools' plotting helpers, and each plot type
(here the score-per-iteration line plot) has one home, `tools.figures`.
"""
import numpy as np

from enhancers import filters

RECIPE_FORMAT = "piea-recipe/2"


def adjustments(result, index):
    """[(filter name, words)] of the filters that moved away from identity in photo `index`'s
    returned parameters (`enhancers.filters.adjustments`); empty if the photo is unchanged."""
    return filters.adjustments(result.selected_parameters(index))


def summary_lines(result, index):
    """Photo `index` of `result` in words: the scores before and after, which candidate was
    returned and why, the adjustments (or that the photo was returned unchanged), warnings."""
    lines = [f"NIMA score {result.input_scores[index]:.3f} (input as given) -> "
             f"{result.output_scores[index]:.3f} (returned)",
             f"Returned: {result.selections[index]}."]
    if result.selected_iterations[index] is not None:  # else the reason says "unchanged"
        moved = adjustments(result, index)
        lines.extend(f"{number}. {words}" for number, (_, words) in enumerate(moved, 1))
        if not moved:
            lines.append(f"No filter changes any colour by {filters.UNCHANGED_TOLERANCE * 255:g}"
                         "/255 or more: the photo was returned unchanged.")
    lines.extend(f"Warning: {warning}" for warning in result.warnings[index])
    return lines


def recipe(result, index, *, source=None, nima=None, settings=None):
    """The JSON-ready recipe of photo `index` of `result` (module docstring).

    `source` (the input file), `nima` (which NIMA guided it) and `settings` (iterations,
    learning rate, ...) are recorded as given.
    """
    returned = result.selected_parameters(index)
    returned_json = filters.to_jsonable(returned)
    scores = [float(s) for s in result.scores[index]]
    iteration = result.selected_iterations[index]
    moved = adjustments(result, index)
    return {
        "format": RECIPE_FORMAT,
        "method": "PIEA (Du et al., ICMR 2019), filters of EXPOSURE (Hu et al. 2018)",
        "source": source,
        "nima": nima,
        "settings": settings or {},
        "summary": summary_lines(result, index),
        "returned": {"iteration": iteration, "select": result.select,
                     "reason": result.selections[index]},
        "unchanged": iteration is None or not moved,
        "adjustments": [
            {"filter": name, "title": filters.FILTERS_BY_NAME[name].title, "in_words": words,
             "parameters": returned_json[name]}
            for name, words in moved
        ],
        "warnings": list(result.warnings[index]),
        "filter_order": list(filters.FILTER_NAMES),
        "parameters": returned_json,
        "score_before": float(result.input_scores[index]),
        "score_after": float(result.output_scores[index]),
        "initial_exposure": float(result.initial_exposures[index]),
        "scores": scores,
        "parameters_per_iteration": [
            filters.to_jsonable(result.photo_parameters(index, t))
            for t in range(result.iterations + 1)
        ],
    }


def replay(image, recipe_dict):
    """Renders float (h, w, 3) `image` with a recipe's returned parameters; returns (h, w, 3)."""
    params = filters.from_jsonable(recipe_dict["parameters"])
    batched = {name: np.asarray(value, np.float32)[np.newaxis] for name, value in params.items()}
    enhanced = filters.apply(np.asarray(image, np.float32)[np.newaxis], batched)
    return np.clip(np.asarray(enhanced)[0], 0.0, 1.0)


# --------------------------------------------------------------------------- the figure


def shown_iterations(iterations, count=5):
    """Up to `count` evenly spaced iterations from 0 to `iterations`, both included."""
    return sorted({int(round(t)) for t in np.linspace(0, iterations, min(count, iterations + 1))})
