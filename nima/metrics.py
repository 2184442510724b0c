"""NIMA evaluation on AVA (paper section 4.1, Table 1)."""
import numpy as np
from scipy import stats

from nima.emd import emd_loss
from nima.model import mean_score

HIGH_QUALITY_THRESHOLD = 5.0  # two-class split on mean score (Murray et al., AVA)
UNDEFINED_CORRELATION = ("undefined: the {which} mean scores are constant over the {count} "
                         "images (a correlation needs varying values on both sides)")



def nima_metrics(true_distributions, predicted_distributions):
    """Two-class accuracy at mean score 5, LCC and SRCC of mean scores, mean EMD with r = 1.

    A correlation is undefined when either side's mean scores are all equal (e.g. a barely
    trained model that predicts one score for every image): LCC and SRCC are then None, never
    NaN, and "correlation_note" says why.
    """
    true_distributions = np.asarray(true_distributions, np.float64)
    predicted_distributions = np.asarray(predicted_distributions, np.float64)
    if true_distributions.shape != predicted_distributions.shape or true_distributions.ndim != 2:
        raise ValueError(
            f"Expected two (n, 10) arrays, got {true_distributions.shape} and "
            f"{predicted_distributions.shape}."
        )
    if len(true_distributions) < 2:
        raise ValueError("Correlations need at least two evaluated images.")
    true_mean = np.asarray(mean_score(true_distributions))
    predicted_mean = np.asarray(mean_score(predicted_distributions))
    metrics = {
        "accuracy": float(
            np.mean((true_mean > HIGH_QUALITY_THRESHOLD) == (predicted_mean > HIGH_QUALITY_THRESHOLD))
        ),
        "lcc": None,
        "srcc": None,
        "emd": float(np.mean(emd_loss(true_distributions, predicted_distributions, r=1))),
        "num_images": int(len(true_distributions)),
    }
    constant = [name for name, values in (("true", true_mean), ("predicted", predicted_mean))
                if np.ptp(values) == 0]
    if constant:
        metrics["correlation_note"] = UNDEFINED_CORRELATION.format(
            which=" and ".join(constant), count=len(true_mean))
    else:
        metrics["lcc"] = float(stats.pearsonr(true_mean, predicted_mean)[0])
        metrics["srcc"] = float(stats.spearmanr(true_mean, predicted_mean)[0])
    return metrics
