"""The simulation of Li et al., KDD 2010 (their Algorithm 4), vectorised over the pages.

Ground truth (``GroundTruth.generate``, shaped like the paper's): ``n_pages`` pages, ``n_ads`` ads,
about ``mean_ads_per_page`` ads with a true CTR per page (at least ``n`` so every page fills its
candidate list), pages grouped into publishers and ads into ad groups for the second CFB level,
and an initial CFB table that knows a ``known_fraction`` of the pairs with 100 .. 2,000 impressions.
True CTRs are log-normal: median 1%, about 90% of the pairs between 0.25% and 4%, capped at 50%.

Each iteration serves every page once: the CFB score of the page's ads (one level: the (page, ad)
CTR; two levels: 0.7 x (page, ad) + 0.3 x (publisher, ad group); a level counts from ``threshold``
impressions, below it the default CTR), the top ``n`` (ties broken at random), the EE algorithm,
the top ``m`` shown, feedback and the CFB update. All pages of an iteration are served from the
CFB table as it stood at the iteration's start (the paper updates page by page; pages only share
the second level, so only two-level runs see the difference, a lag of one iteration).

Feedback, one click per page view at most: ``random`` reads the shown list top-down and clicks each
ad with its true CTR, stopping at the first click; ``deterministic`` credits ad ``i`` with the
partial click ``CTR_i * prod_{j<i} (1 - CTR_j)``. Metrics every ``record_every`` iterations: the CFB
coverage (pairs with at least ``threshold`` impressions) and the average expected CTR of the
window (expected clicks from the deterministic formula over impressions).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from mdaf.explore.li2010 import (
    PAPER_EPSILONS,
    ExponentiatedGradient,
    algorithm1_slates,
    algorithm3_slates,
    check_list_sizes,
    decreasing_epsilon,
    theorem1_settings,
)

FEEDBACKS = ("random", "deterministic")
DEFAULT_CTRS = ("zero", "mean", "one")
TIE_BREAKS = ("fixed", "random")
RANK_SLICE = 125  # pages per top-n search
LEVEL_WEIGHTS = (0.7, 0.3)  # the paper's linear combination of (page, ad) and (publisher, ad group)
KINDS = ("greedy", "epsilon-greedy", "epsilon-decreasing", "EG", "confidence")


@dataclass(frozen=True)
class GroundTruthConfig:
    """The shape of the ground-truth table and of the initial CFB table (defaults: the paper's)."""

    seed: int = 0
    n_pages: int = 1000
    n_ads: int = 10_000
    mean_ads_per_page: float = 65.0
    min_ads_per_page: int = 10
    n_publishers: int = 35
    n_ad_groups: int = 9184
    known_fraction: float = 17_814 / 64_798
    median_ctr: float = 0.01
    ctr_sigma_ad: float = 0.6
    ctr_sigma_page: float = 0.4
    ctr_sigma_pair: float = 0.5
    known_impressions: tuple[float, float] = (100.0, 2000.0)

    def __post_init__(self):
        for name in ("n_pages", "n_ads", "min_ads_per_page", "n_publishers", "n_ad_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_ad_groups > self.n_ads:
            raise ValueError(f"n_ad_groups ({self.n_ad_groups}) must not exceed n_ads ({self.n_ads})")
        if self.n_publishers > self.n_pages:
            raise ValueError(f"n_publishers ({self.n_publishers}) must not exceed n_pages ({self.n_pages})")
        if not self.min_ads_per_page <= self.mean_ads_per_page < self.n_ads:
            raise ValueError(f"mean_ads_per_page must be in [min_ads_per_page, n_ads), "
                             f"got {self.mean_ads_per_page}")
        if not 0 < self.known_fraction <= 1:
            raise ValueError(f"known_fraction must be in (0, 1], got {self.known_fraction}")
        if not 0 < self.median_ctr < 0.5:
            raise ValueError(f"median_ctr must be in (0, 0.5), got {self.median_ctr}")
        low, high = self.known_impressions
        if not 1 <= low <= high:
            raise ValueError(f"known_impressions must be (low, high) with 1 <= low <= high, got "
                             f"{self.known_impressions}")


@dataclass(frozen=True)
class GroundTruth:
    """Per page a padded row of its ads (``-1`` padding), their true CTRs and initial CFB counts."""

    ads: np.ndarray               # (P, W) int64 ad ids, -1 where padding
    true_ctr: np.ndarray          # (P, W) float64, 0 in padding
    known_impressions: np.ndarray  # (P, W) initial CFB impressions (0: unknown pair)
    known_clicks: np.ndarray      # (P, W)
    publisher: np.ndarray         # (P,) publisher of each page
    ad_group: np.ndarray          # (n_ads,) ad group of each ad
    config: GroundTruthConfig

    @property
    def valid(self) -> np.ndarray:
        return self.ads >= 0

    @property
    def n_pairs(self) -> int:
        return int(self.valid.sum())

    @classmethod
    def generate(cls, config: GroundTruthConfig = GroundTruthConfig()) -> GroundTruth:
        c = config
        rng = np.random.default_rng(c.seed)
        extra_mean = c.mean_ads_per_page - c.min_ads_per_page
        # Negative binomial (dispersion 3) for a skewed number of ads per page, capped at n_ads.
        counts = c.min_ads_per_page + rng.negative_binomial(3, 3 / (3 + extra_mean), c.n_pages)
        # Pages in order of their number of ads: the simulation ranks them in slices of similar width.
        counts = np.sort(np.minimum(counts, c.n_ads))
        width = int(counts.max())
        popularity = rng.lognormal(0.0, 1.0, c.n_ads)
        popularity /= popularity.sum()
        ads = np.full((c.n_pages, width), -1, dtype=np.int64)
        for page, count in enumerate(counts.tolist()):
            ads[page, :count] = rng.choice(c.n_ads, size=count, replace=False, p=popularity)
        valid = ads >= 0
        log_ctr = (np.log(c.median_ctr) + c.ctr_sigma_ad * rng.standard_normal(c.n_ads)[np.maximum(ads, 0)]
                   + c.ctr_sigma_page * rng.standard_normal(c.n_pages)[:, None]
                   + c.ctr_sigma_pair * rng.standard_normal(ads.shape))
        true_ctr = np.where(valid, np.minimum(np.exp(log_ctr), 0.5), 0.0)
        known = valid & (rng.random(ads.shape) < c.known_fraction)
        low, high = c.known_impressions
        impressions = np.round(np.exp(rng.uniform(np.log(low), np.log(high), ads.shape)))
        known_impressions = np.where(known, impressions, 0.0)
        known_clicks = rng.binomial(known_impressions.astype(np.int64), true_ctr).astype(np.float64)
        # Every publisher has a page and every ad group an ad; the rest are spread at random.
        publisher = np.concatenate([np.arange(c.n_publishers),
                                    rng.integers(0, c.n_publishers, c.n_pages - c.n_publishers)])
        ad_group = np.concatenate([np.arange(c.n_ad_groups),
                                   rng.integers(0, c.n_ad_groups, c.n_ads - c.n_ad_groups)])
        return cls(ads=ads, true_ctr=true_ctr, known_impressions=known_impressions, known_clicks=known_clicks,
                   publisher=rng.permutation(publisher), ad_group=rng.permutation(ad_group), config=config)


@dataclass(frozen=True)
class PolicySpec:
    """One EE algorithm: ``kind`` in ``KINDS``; ``epsilon`` for epsilon-greedy and confidence."""

    kind: str
    epsilon: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not (np.isfinite(self.epsilon) and 0 <= self.epsilon <= 1):
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")

    @property
    def name(self) -> str:
        return f"{self.kind} {self.epsilon:g}" if self.kind in ("epsilon-greedy", "confidence") else self.kind


@dataclass(frozen=True)
class SimulationSettings:
    """Algorithm 4's settings (defaults: the paper's, except the number of iterations)."""

    iterations: int = 6000
    n: int = 10
    m: int = 3
    r: int = 1
    q: int = 4
    w: float = 1000.0
    b: float = 300.0
    threshold: float = 100.0
    feedback: str = "random"
    levels: int = 1
    default_ctr: str = "zero"
    eg_delta: float = 0.05
    record_every: int = 100
    tie_break: str = "fixed"

    def __post_init__(self):
        check_list_sizes(self.n, self.m, self.r, self.q)
        for name in ("iterations", "record_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {FEEDBACKS}, got {self.feedback!r}")
        if self.levels not in (1, 2):
            raise ValueError(f"levels must be 1 or 2, got {self.levels!r}")
        if self.tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {self.tie_break!r}")
        if self.default_ctr not in DEFAULT_CTRS:
            raise ValueError(f"default_ctr must be one of {DEFAULT_CTRS}, got {self.default_ctr!r}")
        for name in ("w", "b", "threshold"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass
class SimulationRun:
    """The curves of one run: ``iteration`` (end of each window), ``coverage`` and ``expected_ctr``."""

    policy: str
    settings: SimulationSettings
    seed: int
    iteration: np.ndarray
    coverage: np.ndarray
    expected_ctr: np.ndarray
    page_views_per_second: float
    eg_probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _ctr(clicks: np.ndarray, impressions: np.ndarray, threshold: float, default: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(impressions >= threshold, clicks / impressions, default)


def default_ctr_value(truth: GroundTruth, name: str) -> float:
    """0, the mean CTR of the initial CFB table's known pairs, or 1."""
    if name == "mean":
        known = truth.known_impressions > 0
        return float((truth.known_clicks[known] / truth.known_impressions[known]).mean())
    return {"zero": 0.0, "one": 1.0}[name]


def simulate(truth: GroundTruth, spec: PolicySpec, settings: SimulationSettings = SimulationSettings(),
             seed: int = 0) -> SimulationRun:
    """Algorithm 4: ``settings.iterations`` iterations over all pages with the EE algorithm ``spec``."""
    s = settings
    rng = np.random.default_rng(seed)
    n_pages, width = truth.ads.shape
    if int(truth.valid.sum(axis=1).min()) < s.n:
        raise ValueError(f"every page needs at least n = {s.n} ads with ground truth")
    rows = np.arange(n_pages)[:, None]
    default = default_ctr_value(truth, s.default_ctr)
    impressions = truth.known_impressions.copy()
    clicks = truth.known_clicks.copy()
    # A tiny random key breaks ties (e.g. between the unknown ads at the default CTR): drawn once per
    # run ("fixed", a deterministic ranker) or per page view ("random").
    tie_break = 1e-12 * rng.random((n_pages, width))
    page_score = np.where(truth.valid, _ctr(clicks, impressions, s.threshold, default), -np.inf)
    if s.levels == 2:
        n_groups = truth.config.n_ad_groups
        cell = truth.publisher[:, None] * n_groups + truth.ad_group[np.maximum(truth.ads, 0)]
        cell_impressions = np.bincount(cell[truth.valid], impressions[truth.valid],
                                       minlength=truth.config.n_publishers * n_groups)
        cell_clicks = np.bincount(cell[truth.valid], clicks[truth.valid], minlength=cell_impressions.size)
        cell_score = _ctr(cell_clicks, cell_impressions, s.threshold, default)
    key = page_score + tie_break  # two levels: recomputed each iteration over the used columns
    eg = None
    if spec.kind == "EG":
        eg = ExponentiatedGradient(PAPER_EPSILONS, **theorem1_settings(len(PAPER_EPSILONS),
                                                                        s.iterations * n_pages, s.eg_delta))
    # Top-n search in slices of pages of similar width (pages come sorted by their number of ads).
    counts = truth.valid.sum(axis=1)
    slices = [(first, min(first + RANK_SLICE, n_pages), int(counts[first:first + RANK_SLICE].max()))
              for first in range(0, n_pages, RANK_SLICE)]
    top = np.empty((n_pages, s.n), dtype=np.int64)
    n_records = s.iterations // s.record_every
    coverage = np.zeros(n_records, dtype=np.int64)
    expected_ctr = np.zeros(n_records)
    window_expected = 0.0
    start = time.perf_counter()
    for t in range(s.iterations):
        if s.tie_break == "random":
            tie_break = 1e-12 * rng.random((n_pages, width))
        if s.tie_break == "random" and s.levels == 1:
            key = page_score + tie_break
        for first, stop, used in slices:
            if s.levels == 2:
                part = np.s_[first:stop, :used]
                key[part] = (LEVEL_WEIGHTS[0] * page_score[part] + LEVEL_WEIGHTS[1] * cell_score[cell[part]]
                             + tie_break[part])
            top[first:stop] = np.argpartition(key[first:stop, :used], used - s.n, axis=1)[:, used - s.n:]
        ranked = np.take_along_axis(top, np.argsort(-np.take_along_axis(key, top, axis=1), axis=1), axis=1)
        if spec.kind == "greedy":
            shown = ranked[:, :s.m]
        elif spec.kind == "confidence":
            shown = algorithm3_slates(ranked, impressions[rows, ranked], spec.epsilon, s.m, s.r, s.q,
                                      s.w, s.b, s.threshold, rng)[0]
        else:
            if spec.kind == "EG":
                probs = eg.probabilities
                d = eg.draw(rng, n_pages)
                epsilon = eg.epsilons[d]
            elif spec.kind == "epsilon-decreasing":
                epsilon = decreasing_epsilon(t)
            else:
                epsilon = spec.epsilon
            shown = algorithm1_slates(ranked, epsilon, s.m, s.r, s.q, rng)[0]
        ctr = truth.true_ctr[rows, shown]
        not_clicked_before = np.cumprod(np.concatenate([np.ones((n_pages, 1)), 1.0 - ctr[:, :-1]], axis=1),
                                        axis=1)
        partial = ctr * not_clicked_before
        if s.feedback == "deterministic":
            click = partial
        else:
            hit = rng.random(ctr.shape) < ctr
            click = (hit & (np.cumsum(hit, axis=1) == 1)).astype(np.float64)
        impressions[rows, shown] += 1.0
        clicks[rows, shown] += click
        page_score[rows, shown] = _ctr(clicks[rows, shown], impressions[rows, shown], s.threshold, default)
        if s.levels == 2:
            touched = cell[rows, shown]
            np.add.at(cell_impressions, touched, 1.0)
            np.add.at(cell_clicks, touched, click)
            cell_score[touched] = _ctr(cell_clicks[touched], cell_impressions[touched], s.threshold, default)
        else:
            key[rows, shown] = page_score[rows, shown] + tie_break[rows, shown]
        if eg is not None:
            eg.update(d, click.sum(axis=1), probs)
        window_expected += partial.sum()
        if (t + 1) % s.record_every == 0:
            k = (t + 1) // s.record_every - 1
            coverage[k] = int((impressions >= s.threshold).sum())
            expected_ctr[k] = window_expected / (s.record_every * n_pages * s.m)
            window_expected = 0.0
    seconds = time.perf_counter() - start
    return SimulationRun(policy=spec.name, settings=settings, seed=seed,
                         iteration=s.record_every * np.arange(1, n_records + 1), coverage=coverage,
                         expected_ctr=expected_ctr, page_views_per_second=s.iterations * n_pages / seconds,
                         eg_probabilities=eg.probabilities if eg is not None else np.zeros(0))


#: The paper's EE comparison: pure exploitation, epsilon-greedy and confidence-based exploration with
#: epsilon 0.1, 0.5, 0.9, epsilon-decreasing and EG over the candidates 0.06 .. 0.51.
PAPER_POLICIES = (
    PolicySpec("greedy"),
    *(PolicySpec("epsilon-greedy", e) for e in (0.1, 0.5, 0.9)),
    PolicySpec("epsilon-decreasing"),
    PolicySpec("EG"),
    *(PolicySpec("confidence", e) for e in (0.1, 0.5, 0.9)),
)
#: The figures: (name, feedback, CFB levels). The EE comparisons use default CTR 0.
PAPER_SCENARIOS = (("random feedback, one-level CFB", "random", 1),
                   ("deterministic feedback, one-level CFB", "deterministic", 1),
                   ("random feedback, two-level CFB", "random", 2))


def experiment_grid(iterations: int, scenarios=PAPER_SCENARIOS, policies=PAPER_POLICIES,
                    later_policies=None, default_ctr_baselines: bool = True,
                    ) -> list[tuple[str, PolicySpec, SimulationSettings]]:
    """(scenario, policy, settings) of every run for one seed.

    ``policies`` run in the first scenario, ``later_policies`` (default: the same) in the others;
    the baselines are greedy with default CTR mean and 1 in the first scenario.
    """
    later_policies = policies if later_policies is None else later_policies
    grid = [(name, spec, SimulationSettings(iterations=iterations, feedback=feedback, levels=levels))
            for i, (name, feedback, levels) in enumerate(scenarios)
            for spec in (policies if i == 0 else later_policies)]
    if default_ctr_baselines:
        name, feedback, levels = scenarios[0]
        grid += [(name, PolicySpec("greedy"), SimulationSettings(iterations=iterations, feedback=feedback,
                                                                 levels=levels, default_ctr=default))
                 for default in ("mean", "one")]
    return grid


def run_label(spec: PolicySpec, settings: SimulationSettings) -> str:
    """The policy's name, with the default CTR when it is not 0."""
    if settings.default_ctr == "zero":
        return spec.name
    return f"{spec.name} (default CTR {settings.default_ctr})"


def _run_one(job) -> dict:
    truth_config, scenario, spec, settings, seed = job
    run = simulate(GroundTruth.generate(truth_config), spec, settings, seed=seed)
    return {"scenario": scenario, "policy": run_label(spec, settings), "seed": seed,
            "iteration": run.iteration, "coverage": run.coverage, "expected_ctr": run.expected_ctr,
            "page_views_per_second": run.page_views_per_second,
            "eg_probabilities": run.eg_probabilities.tolist()}


def run_experiments(seeds, grid, truth_config: GroundTruthConfig = GroundTruthConfig(),
                    jobs: int = 1) -> pd.DataFrame:
    """Every run of ``grid`` (``experiment_grid``) for every seed (the ground truth's seed is the run's).

    Returns one row per (scenario, policy, seed, record): ``iteration``, ``coverage``,
    ``coverage_%`` (of the ground-truth pairs), ``expected_ctr``, ``page_views_per_second``.
    """
    work = [(GroundTruthConfig(**{**asdict(truth_config), "seed": seed}), *entry, seed)
            for seed in seeds for entry in grid]
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(_run_one, work, chunksize=1)
    else:
        results = [_run_one(job) for job in work]
    n_pairs = {seed: GroundTruth.generate(GroundTruthConfig(**{**asdict(truth_config), "seed": seed})).n_pairs
               for seed in seeds}
    frames = []
    for result in results:
        frame = pd.DataFrame({"iteration": result["iteration"], "coverage": result["coverage"],
                              "expected_ctr": result["expected_ctr"]})
        frame["coverage_%"] = 100.0 * frame["coverage"] / n_pairs[result["seed"]]
        for key in ("scenario", "policy", "seed", "page_views_per_second"):
            frame[key] = result[key]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def final_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the last record and of the run's average CTR.

    Columns: ``coverage_%`` at the end, ``ctr_%`` (expected CTR of the last window),
    ``avg_ctr_%`` (over the whole run), and each one's gain over greedy (default CTR 0) of the same
    scenario and seed, in percent.
    """
    last = curves[curves["iteration"] == curves.groupby(["scenario", "policy", "seed"])["iteration"]
                  .transform("max")]
    per_run = last.set_index(["scenario", "policy", "seed"])[["coverage_%", "expected_ctr"]].copy()
    per_run["avg_ctr"] = curves.groupby(["scenario", "policy", "seed"])["expected_ctr"].mean()
    per_run = per_run.rename(columns={"expected_ctr": "ctr"})
    greedy = per_run.xs("greedy", level="policy")
    gains = {}
    for column in ("coverage_%", "ctr", "avg_ctr"):
        base = greedy[column].reindex(per_run.index.droplevel("policy")).to_numpy()
        gains[f"{column.rstrip('_%')}_gain_%"] = 100.0 * (per_run[column].to_numpy() / base - 1.0)
    per_run = per_run.assign(**gains)
    per_run["ctr"] *= 100.0
    per_run["avg_ctr"] *= 100.0
    per_run = per_run.rename(columns={"ctr": "ctr_%", "avg_ctr": "avg_ctr_%"})
    grouped = per_run.groupby(level=["scenario", "policy"], sort=False)
    table = grouped.mean().join(grouped.std().add_suffix("_std"))
    table["seeds"] = grouped.size()
    return table


def convergence_iteration(curve: pd.DataFrame, fraction: float = 0.9) -> float:
    """First recorded iteration where the mean coverage made ``fraction`` of its total change."""
    mean = curve.groupby("iteration")["coverage_%"].mean()
    start, end = mean.iloc[0], mean.iloc[-1]
    if end <= start:
        return float("nan")
    return float(mean.index[np.argmax(mean.to_numpy() >= start + fraction * (end - start))])


def paper_findings(curves: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The paper's qualitative findings checked on ``curves``: (finding, verdict, evidence).

    Verdicts: "holds", "does not hold", or "not tested" when the runs it needs are missing.
    """
    table = final_table(curves)
    findings = []
    explorers = [(scenario, policy) for scenario, policy in table.index
                 if policy != "greedy" and "default CTR" not in policy]

    def verdict(ok: bool) -> str:
        return "holds" if ok else "does not hold"

    coverage_gain = table.loc[explorers, "coverage_gain_%"]
    findings.append(("every EE algorithm beats pure exploitation in CFB coverage",
                     verdict(bool((coverage_gain > 0).all())),
                     f"coverage gain over greedy {coverage_gain.min():+.1f}% .. {coverage_gain.max():+.1f}%"))
    ctr_gain = table.loc[explorers, "ctr_gain_%"]
    findings.append(("after an early dip, every EE algorithm beats pure exploitation in expected CTR",
                     verdict(bool((ctr_gain > 0).all())),
                     f"{int((ctr_gain > 0).sum())} of {ctr_gain.size} runs above greedy at the end; gain "
                     f"{ctr_gain.min():+.1f}% .. {ctr_gain.max():+.1f}%"))
    first = curves["scenario"].iloc[0]
    data = curves[curves["scenario"] == first]
    times = {policy: convergence_iteration(group) for policy, group in data.groupby("policy")}
    greedy_eps = [f"epsilon-greedy {e:g}" for e in (0.1, 0.5, 0.9)]
    if all(name in times for name in greedy_eps):
        t = [times[name] for name in greedy_eps]
        findings.append(("larger epsilon converges faster (coverage)", verdict(t[0] >= t[1] >= t[2]),
                         f"{first}: 90% of the coverage gain at iteration " + ", ".join(
                             f"{t_i:g} (epsilon {e})" for t_i, e in zip(t, (0.1, 0.5, 0.9), strict=True))))
    if "EG" in times and any(name in times for name in greedy_eps):
        others = {name: times[name] for name in greedy_eps if name in times}
        findings.append(("EG converges fastest among the epsilon-greedy variants",
                         verdict(times["EG"] < min(others.values())),
                         f"{first}: EG at iteration {times['EG']:g}, fixed epsilons at "
                         + ", ".join(f"{v:g}" for v in others.values())))
    best = table.loc[explorers, "ctr_%"].groupby(level="scenario", sort=False).idxmax()
    best_is_confidence = [policy.startswith("confidence") for _, policy in best]
    findings.append(("confidence-based exploration is the best EE algorithm (expected CTR at the end)",
                     verdict(all(best_is_confidence)),
                     "; ".join(f"{scenario}: {policy}" for scenario, policy in best)))
    two_level = [s for s in table.index.get_level_values("scenario").unique() if "two-level" in s]
    if two_level:
        gain = table.loc[[i for i in explorers if i[0] == two_level[0]], "coverage_gain_%"]
        findings.append(("with the two-level CFB, EE raises coverage by 23.6% over the baseline",
                         verdict(bool(gain.mean() >= 23.6 / 2)),
                         f"mean coverage gain {gain.mean():+.1f}% ({gain.min():+.1f}% .. "
                         f"{gain.max():+.1f}%); holds if at least half the paper's"))
    optimistic = [i for i in table.index if i[1] == "greedy (default CTR one)"]
    if optimistic:
        coverage = table.loc[optimistic[0], "coverage_%"]
        findings.append(("default CTR 1 (explore everything first) reaches full coverage",
                         verdict(bool(coverage >= 99.0)), f"coverage {coverage:.1f}% at the end"))
    return findings
