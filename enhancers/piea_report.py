"""PIEA's interpretable outputs: the JSON recipe and a figure like the paper's Figure 4.

- `recipe(result, index, ...)`: a JSON-ready dict for one photo of a `PieaResult`: the filter
  order, the final parameters of every filter in words and numbers, the NIMA score at every
  iteration and every filter's parameters at every iteration (the "interpretable adjusting
  strategy", PIEA section 4.3). Its "parameters" entry is exactly the natural-unit dict that
  `enhancers.filters.apply` takes, so `replay(image, recipe)` re-renders the enhanced photo.
- `shown_iterations(iterations)`: the iterations Figure 4 shows.

Figure 4 itself (the filters' final parameters in words, the score curve, the photo after the
shown iterations) is drawn by `tools.figures.piea_figure` with matplotlib: packages layer
enhancers -> tools, so enhancers may not import tools' plotting helpers, and each plot type
(here the score-per-iteration line plot) has one home, `tools.figures`.
"""
import json

import numpy as np

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


def shown_iterations(iterations, count=5):
    """Up to `count` evenly spaced iterations from 0 to `iterations`, both included."""
    return sorted({int(round(t)) for t in np.linspace(0, iterations, min(count, iterations + 1))})
