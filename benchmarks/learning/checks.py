"""The learning benchmark's checks and the figures over seeds (see ``benchmarks/bench_learning.py``).

A recipe's ``run(ctx)`` returns, per split and metric, one score per item (photo, crop or degradation draw)
for each *entry*: ``'model'``, ``'control'`` (the untrained, unchanged or disabled model), every baseline and
whatever else its checks name. The items are the split's ``'items'``, or the metric's own ``'items'`` when it
is scored on other inputs (e.g. one clean input per photo beside several degraded draws). This module turns
the results of several seeds into:

- per split and entry: the mean over seeds of the per-seed mean over items, with the smallest and largest;
- the strongest baseline per split (the best mean of ``BASELINES``), the model's gain over it over seeds,
  and the items won (seed x item pairs where the model beats that baseline);
- each :class:`Check`, on the mean over seeds, with its control scored in the subject's place.
"""
from dataclasses import asdict, dataclass

import numpy as np

STRONGEST_BASELINE = 'strongest baseline'
SPLITS = ('validation', 'held_out')  # scored splits; 'train' photos are only trained on
LEARNING, GUARD = 'learning', 'guard'


@dataclass(frozen=True)
class Check:
    """``subject`` beats ``reference`` by more than ``min_gain`` on ``split`` (mean over seeds and items).

    ``reference``: an entry, or ``STRONGEST_BASELINE`` (the best baseline of that split and metric).
    ``control``: the entry scored in the subject's place; a ``learning`` check must fail with it, or it
    cannot tell learning from nothing. A ``guard`` ("does not break ...", "keeps ...") bounds a loss: a
    no-op passes it too, and its name must say so.
    """
    name: str
    split: str = 'held_out'
    subject: str = 'model'
    reference: str = STRONGEST_BASELINE
    control: str = 'control'
    min_gain: float = 0.0
    metric: str = None  # default: the recipe's METRIC
    lower_is_better: bool = None  # default: the recipe's LOWER_IS_BETTER
    kind: str = LEARNING

    def __post_init__(self):
        if self.kind not in (LEARNING, GUARD):
            raise ValueError(f'check {self.name!r}: kind must be {LEARNING!r} or {GUARD!r}, got {self.kind!r}')
        if self.split not in SPLITS:
            raise ValueError(f'check {self.name!r}: split must be one of {SPLITS}, got {self.split!r}')


def _mean_min_max(values):
    values = [float(v) for v in values]
    return {'mean': float(np.mean(values)), 'min': min(values), 'max': max(values), 'per_seed': values}


class SeedResults:
    """The ``run`` results of one recipe over its seeds, with the recipe's declarations."""

    def __init__(self, recipe, results, seeds):
        self.recipe, self.results, self.seeds = recipe, results, list(seeds)
        self.metric = recipe.METRIC
        self.lower_is_better = getattr(recipe, 'LOWER_IS_BETTER', False)
        self.validate()

    def validate(self):
        for seed, result in zip(self.seeds, self.results):
            for split in SPLITS:
                scores = result['scores'].get(split)
                if not scores:
                    raise ValueError(f'seed {seed}: no scores for the {split} split')
                for metric in self.metrics(split):
                    items = self.items(split, metric)
                    for entry, values in self.entries(split, metric, result).items():
                        if len(values) != len(items):
                            raise ValueError(f'seed {seed}, {split}, {metric}, {entry}: {len(values)} scores for '
                                             f'{len(items)} items')
                missing = [e for e in ('model', 'control', *self.recipe.BASELINES)
                           if e not in self.entries(split, self.metric, result)]
                if missing:
                    raise ValueError(f'seed {seed}, {split}: no {self.metric} scores for {", ".join(missing)}')

    def metrics(self, split):
        return [metric for metric in self.results[0]['scores'][split] if metric != 'items']

    def items(self, split, metric=None):
        scores = self.results[0]['scores'][split]
        return scores[metric or self.metric].get('items', scores.get('items'))

    def entries(self, split, metric, result=None):
        """{entry: scores} of one seed's result (the first by default)."""
        scores = (result or self.results[0])['scores'][split][metric]
        return {entry: values for entry, values in scores.items() if entry != 'items'}

    def per_item(self, split, metric, entry):
        """[seed][item] scores."""
        return [np.asarray(r['scores'][split][metric][entry], float) for r in self.results]

    def entry_summary(self, split, metric, entry):
        return _mean_min_max([scores.mean() for scores in self.per_item(split, metric, entry)])

    def sign(self, lower_is_better):
        return -1.0 if lower_is_better else 1.0

    def strongest_baseline(self, split, metric=None, lower_is_better=None):
        metric = metric or self.metric
        lower = self.lower_is_better if lower_is_better is None else lower_is_better
        baselines = [b for b in self.recipe.BASELINES if b in self.entries(split, metric)]
        sign = self.sign(lower)
        return max(baselines, key=lambda b: sign * self.entry_summary(split, metric, b)['mean'])

    def gain(self, split, metric, lower_is_better, subject, reference):
        """Gain of ``subject`` over ``reference`` (positive: better) per seed, and the items won."""
        sign = self.sign(lower_is_better)
        if reference == STRONGEST_BASELINE:
            reference = self.strongest_baseline(split, metric, lower_is_better)
        gains, won, total = [], 0, 0
        for subject_scores, reference_scores in zip(self.per_item(split, metric, subject),
                                                    self.per_item(split, metric, reference)):
            difference = sign * (subject_scores - reference_scores)
            gains.append(difference.mean())
            won += int((difference > 0).sum())
            total += difference.size
        return dict(_mean_min_max(gains), reference=reference, won=won, items=total)

    def split_table(self, split):
        """Every entry of the main metric, the strongest baseline, the model's gain over it."""
        strongest = self.strongest_baseline(split)
        return {
            'items': list(self.items(split)),
            'entries': {entry: self.entry_summary(split, self.metric, entry)
                        for entry in self.entries(split, self.metric)},
            'other_metrics': {metric: {'items': list(self.items(split, metric)),
                                       **{entry: self.entry_summary(split, metric, entry)
                                          for entry in self.entries(split, metric)}}
                              for metric in self.metrics(split) if metric != self.metric},
            'strongest_baseline': strongest,
            'model_gain': self.gain(split, self.metric, self.lower_is_better, 'model', strongest),
            'control_gain': self.gain(split, self.metric, self.lower_is_better, 'control', strongest),
        }

    def evaluate(self, check):
        metric = check.metric or self.metric
        lower = self.lower_is_better if check.lower_is_better is None else check.lower_is_better
        subject = self.gain(check.split, metric, lower, check.subject, check.reference)
        control = self.gain(check.split, metric, lower, check.control, check.reference)
        passed, control_passes = subject['mean'] > check.min_gain, control['mean'] > check.min_gain
        # a learning check that its control passes cannot tell learning from nothing: it counts as failed
        ok = passed and not (check.kind == LEARNING and control_passes)
        return dict(asdict(check), metric=metric, lower_is_better=lower, subject_gain=subject,
                    control_gain=control, passed=bool(passed), control_passes=bool(control_passes), ok=bool(ok))


def describe_check(result):
    """One line: verdict, the claim, the measured gain over seeds and what the control scored."""
    gain, control = result['subject_gain'], result['control_gain']
    verdict = 'PASS' if result['ok'] else 'FAIL'
    line = (f"[{verdict}] {result['name']} ({result['split']}, {result['metric']}): {result['subject']} - "
            f"{gain['reference']} = {gain['mean']:+.3f} [{gain['min']:+.3f}, {gain['max']:+.3f}] over seeds, "
            f"needs > {result['min_gain']:+g}; won {gain['won']}/{gain['items']}. Control ({result['control']}): "
            f"{control['mean']:+.3f}")
    if result['kind'] == LEARNING:
        line += ', fails it as it must' if not result['control_passes'] else ', PASSES it: the check cannot tell ' \
                                                                               'learning from nothing'
    else:
        line += ' (a guard: a no-op passes it too)' if result['control_passes'] else ' (a guard)'
    return line
