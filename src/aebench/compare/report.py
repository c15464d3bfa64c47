"""The comparison's report: summary.csv, summary.md, groups.csv, differences.csv, the figures, and the table
printed in the terminal.  The report's prose is here, as text with places for its numbers."""

from __future__ import annotations

from pathlib import Path

from .. import atomic, stats
from . import figures, variance
from .differences import DIFFERENCE_COLUMNS, Best, best_groups, difference_metrics, differences
from .groups import Comparison, Group
from .rows import METRICS, PREDICTED
from .tables import (DIFFERENCE_HEAD, FACTOR_HEADS, cell, difference_cells, difference_table, factor_table, fmt_bound,
                     group_table, job_cell, markdown_table, mean_std, spread_table, text_table)

SUMMARY_COLUMNS = ["job", "status", "overrides", "model", "arch", "dataset", "latent", "epochs", "seed", *METRICS]
INTERVAL_COLUMNS = [f"{k}_ci_{end}" for k in PREDICTED for end in ("low", "high")] + ["ci_method"]
GROUP_COLUMNS = ["group", "model", "arch", "dataset", "latent", "epochs", "n_seeds", "seeds", "jobs", "interval"]

# ------------------------------------------------------------------ summary.md's text
HEADING = "# aebench comparison\n\n{n} job(s): {done} completed, {failed} not completed{skipped}.\n"
SKIPPED = ", {n} skipped (files unreadable: {which})"
ACROSS_SEEDS = (
    "\n## Across seeds\n\n{n} group(s) of jobs that differ only in their seed (and in settings that do not change "
    "results): mean ± standard deviation over the seeds (accuracy spreads in points) [{seed_noise}: the interval of "
    "the mean, Student t with n − 1 degrees of freedom, n = the number of seeds], per group; every job below. "
    "Also in groups.csv.\n\n")
EVERY_JOB = "\n## Every job\n"
JOB_INTERVALS = ("\n[…] beside a job's probe and kNN accuracy: {test_noise} (percentile bootstrap, {resamples} "
                 "resamples, from the run's saved predictions; – where it has none).\n")
NO_BEST_PROBE = ("\nBest linear probe: – (no completed job has a probe accuracy: the probe is skipped on unlabelled "
                 "data).\n")
BEST = "\n{title}{where}: **{name}** ({model}, {arch}, latent {latent}) at {value}."
BEST_TITLES = {"probe_accuracy": "Best linear probe", "mig": "Highest MIG"}  # the metrics that get a best line
OVER_SEEDS = "{value} over {n} seed(s)"
WITHIN_NOISE = (" **Within noise of it** (the 95 % interval of the difference to the best contains 0): {which}.")
CLOSE = "{name} ({difference} [{low}, {high}]{unit})"
ALL_BELOW = " Every other is {below} it beyond the noise (95 % interval of the difference)."
NO_ESTIMATE = " No noise estimate against {n} other(s) ({why}): {which}."
NO_ESTIMATE_WHY = {"probe_accuracy": "one run each, without saved test predictions on the same test images"}
NO_ESTIMATE_SEEDS = "one run each: run several seeds"
FACTORS = (
    "\n## Factors\n\nWhat the codes hold of the data's known factors, for the {n} group(s) with factor read-outs: "
    "{how}. Higher is better for each but Gaussian TC, which is lower for a more factorised code. MIG = mutual "
    "information gap; DCI disent. / compl. / inform. = DCI disentanglement, completeness and informativeness (a "
    "gradient-boosted classifier per factor); SAP = separated attribute predictability; FactorVAE and BetaVAE score "
    "= accuracy at telling which factor was held fixed; Gaussian TC = the total correlation of a Gaussian fitted "
    "to the codes, nats (runs without factors have it too). Definitions and protocols: aebench's "
    "docs/factors.md. Also in {files}.\n\n")
FACTORS_OVER_SEEDS = "mean ± standard deviation over the seeds [{seed_noise}]"
FACTORS_ONE_RUN = "one run each (no interval: run several seeds for one)"
AGAINST_BASELINE = (
    "\n## Against the baseline: {name}\n\nEach group minus the baseline (accuracies in points), with the 95 % "
    "interval of the difference: paired t over seeds where both have the same seeds, Welch's t otherwise, a paired "
    "bootstrap over the test images for two single runs. better / worse: the interval excludes 0 (for {lower} "
    "lower is better); within noise: it contains 0. Also in differences.csv.\n\n")
LOWER = {False: "recon MSE, neg. ELBO and seconds",  # the lower-is-better metrics, without and with factor read-outs
         True: "recon MSE, neg. ELBO, seconds and Gaussian TC"}
NO_OTHER_GROUP = "No other group to compare.\n"
SPREAD = (
    "\n## Where the spread comes from\n\nEach metric's sum of squares over the {groups} groups × the {seeds} seeds "
    "they share, split three ways (a two-way analysis of variance without replication): between the groups; "
    "between the seeds, alike in every group (a seed starts every group from the same random state); and the rest, what a seed does to each group differently. The last two together are "
    "everything the seed explains. p: the F-test of the groups' (the seeds') effect against the rest. Also in "
    "variance.csv.\n\n")
COLUMN_MEANINGS = (
    "\nColumns: probe acc. = linear probe on the frozen codes (test accuracy); probe @N = the same probe fitted on "
    "N labelled train codes (mean over class-balanced draws); kNN acc. = k-nearest neighbours on the same codes; "
    "PCA probe = the same probe on a PCA of the pixels to the same size; recon MSE = test mean squared error per "
    "pixel; neg. ELBO = test BCE summed over pixels + KL, nats per image (VAE only); seconds = wall time of the "
    "whole run.\n")

# ------------------------------------------------------------------ the terminal's
TERMINAL_JOB_INTERVALS = "\n[…]: {test_noise}"
TERMINAL_ACROSS_SEEDS = "\n\nacross seeds (mean ± std) [{seed_noise}]:\n"
TERMINAL_AGAINST_BASELINE = ("\n\nagainst the baseline {name} (group − baseline, accuracies in points; 95 % "
                             "interval; better / worse: it excludes 0, within noise: it contains 0):\n")
TERMINAL_NO_OTHER_GROUP = "no other group"
TERMINAL_FACTORS = ("\n\nfactor read-outs ({how}; higher is better, Gaussian TC lower; docs/factors.md):\n")


def write_report(comparison: Comparison, out: Path, baseline: Group | None = None,
                 reconstructions: bool = True) -> None:
    """Write summary.csv, summary.md (and groups.csv where jobs repeat over seeds, differences.csv against a
    ``baseline`` group) and the figures into ``out``."""
    rows, groups, budgets, factors = comparison.rows, comparison.groups, comparison.budgets, comparison.factors
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_csv(out / "summary.csv", [r.record() for r in rows],
                     SUMMARY_COLUMNS + list(budgets) + list(factors) + INTERVAL_COLUMNS + ["error"])
    if comparison.several_seeds:
        columns = [f"{k}_{s}" for k in [*METRICS, *budgets, *factors] for s in ("mean", "std", "ci_low", "ci_high")]
        atomic.write_csv(out / "groups.csv", [g.record() for g in groups], GROUP_COLUMNS + columns)
    skipped = [r for r in rows if r.status == "skipped"]
    unreadable = SKIPPED.format(n=len(skipped), which="; ".join(f"{r.job}: {r.error}" for r in skipped))
    text = [HEADING.format(n=len(rows), done=len(comparison.done),
                           failed=sum(r.status not in ("completed", "skipped") for r in rows),
                           skipped=unreadable if skipped else "")]
    if comparison.several_seeds:
        text.append(ACROSS_SEEDS.format(n=len(groups), seed_noise=stats.SEED_NOISE))
        text.append(group_table(groups, budgets))
        text.append(EVERY_JOB)
    text.append("\n" + markdown_table(rows, budgets))
    if any(r.ci_method for r in rows):
        text.append(JOB_INTERVALS.format(test_noise=stats.TEST_NOISE, resamples=stats.RESAMPLES))
    text.append(best_probe_lines(comparison))
    if factors:
        text.append(factor_section(comparison))
    if baseline is not None:
        diffs = differences(comparison, baseline)
        atomic.write_csv(out / "differences.csv", [vars(d) for d in diffs], DIFFERENCE_COLUMNS)
        text.append(AGAINST_BASELINE.format(name=comparison.name(baseline), lower=LOWER[bool(factors)]))
        text.append(difference_table(diffs) if diffs else NO_OTHER_GROUP)
    found = variance.spreads(comparison, [k for k in difference_metrics(budgets, factors) if k != "seconds"])
    if found:
        atomic.write_csv(out / "variance.csv", [x.record() for x in found], variance.COLUMNS)
        text.append(SPREAD.format(groups=found[0].shares.groups, seeds=found[0].shares.seeds))
        text.append(spread_table(found))
    text.append(COLUMN_MEANINGS)
    drawn = figures.draw(comparison, out, reconstructions)
    if drawn:
        text.append("\n" + "\n".join(f"![{name}]({name})" for name in drawn) + "\n")
    atomic.write_text(out / "summary.md", "".join(text))


def best_probe_lines(comparison: Comparison) -> str:
    """The best linear probe (per dataset), and which others are within noise of it."""
    found = best_groups(comparison.groups, "probe_accuracy")
    if not found:
        return NO_BEST_PROBE if comparison.groups else ""
    return best_lines(comparison, found)


def best_lines(comparison: Comparison, found: list[Best]) -> str:
    """A line per dataset: its best group in one metric, and which others are within noise of it."""
    return "".join(_best_line(comparison, best, several_datasets=len(found) > 1) + "\n" for best in found)


def _best_line(comparison: Comparison, found: Best, several_datasets: bool) -> str:
    best, key = found.best, found.metric
    value = (OVER_SEEDS.format(value=mean_std(best, key), n=best.n_seeds) if comparison.several_seeds
             else cell(best.members[0], key))
    line = BEST.format(title=BEST_TITLES[key], where=f" on {found.dataset}" if several_datasets else "",
                       name=comparison.name(best), model=best.model, arch=best.arch, latent=best.latent, value=value)
    if found.close:
        line += WITHIN_NOISE.format(which="; ".join(
            CLOSE.format(name=comparison.name(g), difference=fmt_bound(d.difference, key, True),
                         low=fmt_bound(d.ci_low, key, True), high=fmt_bound(d.ci_high, key, True),  # type: ignore
                         unit=" points" if "accuracy" in key else "")
            for g, d in found.close))
    elif found.others and not found.unknown:
        line += ALL_BELOW.format(below="above" if key in stats.LOWER_IS_BETTER else "below")
    if found.unknown:
        names = [comparison.name(g) for g in found.unknown]
        line += NO_ESTIMATE.format(n=len(names), why=NO_ESTIMATE_WHY.get(key, NO_ESTIMATE_SEEDS),
                                   which=", ".join(names[:5]) + (" …" if len(names) > 5 else ""))
    return line


def factor_groups(comparison: Comparison) -> list[Group]:
    """The groups with any of the comparison's factor read-outs."""
    return [g for g in comparison.groups if any(g.mean(k) is not None for k in comparison.factors)]


def factor_section(comparison: Comparison) -> str:
    """summary.md's "Factors": every group's factor read-outs with their intervals, and the highest MIG."""
    shown = factor_groups(comparison)
    how = (FACTORS_OVER_SEEDS.format(seed_noise=stats.SEED_NOISE) if comparison.several_seeds
           else FACTORS_ONE_RUN)
    text = FACTORS.format(n=len(shown), how=how,
                          files="groups.csv and summary.csv" if comparison.several_seeds else "summary.csv")
    text += factor_table(shown, [comparison.name(g) for g in shown], comparison.factors)
    return text + best_lines(comparison, best_groups(comparison.groups, "mig"))


def format_table(comparison: Comparison, baseline: Group | None = None) -> str:
    """A plain-text table for the terminal: every job, then the seed groups where jobs repeat over seeds,
    then the differences to ``baseline`` where one is given."""
    rows, budgets = comparison.rows, comparison.budgets
    cols = ["label", "model", "arch", "latent", "probe_accuracy", *budgets, "knn_accuracy", "pca_probe_accuracy",
            "recon_mse", "neg_elbo", "seconds", "status"]
    text = text_table(cols, [[job_cell(r, c) for c in cols] for r in rows])
    if any(r.ci_method for r in rows):
        text += TERMINAL_JOB_INTERVALS.format(test_noise=stats.TEST_NOISE)
    if comparison.several_seeds:
        gcols = ["group", "n_seeds", "probe_accuracy", *budgets, "knn_accuracy", "recon_mse", "neg_elbo"]
        cells = [[g.name, str(g.n_seeds), *(mean_std(g, c) for c in gcols[2:])] for g in comparison.groups]
        text += TERMINAL_ACROSS_SEEDS.format(seed_noise=stats.SEED_NOISE) + text_table(gcols, cells)
    if comparison.factors:
        shown = factor_groups(comparison)
        how = f"mean ± std [{stats.SEED_NOISE}]" if comparison.several_seeds else "one run each"
        fcols = ["group", "n_seeds", *(FACTOR_HEADS[k] for k in comparison.factors)]
        cells = [[comparison.name(g), str(g.n_seeds), *(mean_std(g, k) for k in comparison.factors)] for g in shown]
        text += TERMINAL_FACTORS.format(how=how) + text_table(fcols, cells)
    if baseline is not None:
        diffs = differences(comparison, baseline)
        text += TERMINAL_AGAINST_BASELINE.format(name=comparison.name(baseline))
        text += text_table(DIFFERENCE_HEAD, [difference_cells(d) for d in diffs]) if diffs else TERMINAL_NO_OTHER_GROUP
    return text
