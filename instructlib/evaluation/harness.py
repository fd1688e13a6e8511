"""Chapter 09: the evaluation harness — ``evaluate(models, datasets, metrics) -> table``, cached on disk.

For every (model, dataset) pair the harness generates answers once (greedy, batched, through the LLM
interface: ``llm.chat``), then scores them with each metric and attaches a bootstrap interval. Two
caches under ``cache_dir()/evaluation`` make a rerun instant: generations keyed by (model, data,
generation settings) and scores keyed by (model, data, metric, bootstrap settings). A model is
identified by a hash of its weights and chat template, a dataset by a hash of its items
(``evaluation.cache``), so changing either one recomputes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from instructlib.evaluation.bootstrap import Interval, bootstrap_ci, bootstrap_statistic
from instructlib.evaluation.cache import Cache, digest, model_fingerprint
from instructlib.evaluation.suite import EvalItem, Metric, as_items, get_metric

COLUMNS = ("model", "data", "metric", "value", "low", "high", "n", "excluded")


def data_fingerprint(items: Sequence[EvalItem]) -> str:
    """A hash of the items (conversations, references, families, texts)."""
    return digest([it.to_dict() for it in items])


@dataclass
class EvalTable:
    """The harness's result: one row per (model, data, metric), plus predictions and per-item values."""

    rows: list[dict] = field(default_factory=list)
    predictions: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    values: dict[tuple[str, str, str], list] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0

    def to_pandas(self):
        """The rows as a pandas DataFrame (columns ``COLUMNS``)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=list(COLUMNS))

    def interval(self, model: str, data: str, metric: str) -> Interval:
        """The row for (model, data, metric) as an ``Interval``."""
        for r in self.rows:
            if (r["model"], r["data"], r["metric"]) == (model, data, metric):
                return Interval(r["value"], r["low"], r["high"], r["n"])
        raise KeyError((model, data, metric))

    def pivot(self, percent: Sequence[str] = ("em", "strict", "loose")) -> "Any":
        """A readable DataFrame: one row per (model, data), one "value [low, high]" column per metric."""
        import pandas as pd

        cells: dict[tuple[str, str], dict[str, str]] = {}
        for r in self.rows:
            iv = Interval(r["value"], r["low"], r["high"], r["n"])
            pct = r["metric"] in percent
            text = iv.format(percent=True) if pct else f"{iv.value:.3g} [{iv.low:.3g}, {iv.high:.3g}]"
            if r["excluded"]:
                text += f" ({r['excluded']} excl.)"
            cells.setdefault((r["model"], r["data"]), {})[r["metric"]] = text
        frame = pd.DataFrame.from_dict(cells, orient="index")
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["model", "data"])
        return frame

    def __repr__(self) -> str:
        return repr(self.to_pandas())

    def _repr_html_(self) -> str:
        return self.to_pandas()._repr_html_()


def generate(llm, items: Sequence[EvalItem], *, max_new_tokens: int = 32, stop: Sequence[str] = ("\n",),
             batch_size: int = 16, progress: bool = True) -> list[str]:
    """Greedy answers of ``llm`` to every item's conversation (cut at ``stop``), whitespace-stripped."""
    convs = [it.chat() for it in items]
    answers = llm.chat(convs, max_new_tokens=max_new_tokens, temperature=0.0, stop=tuple(stop),
                       batch_size=batch_size, progress=progress)
    return [a.strip() for a in answers]


def _interval(metric: Metric, values: list, preds: list[str], items: list[EvalItem], n_boot: int,
              seed: int) -> tuple[Interval, int]:
    """The aggregate with its bootstrap interval, and how many items were excluded (value None)."""
    keep = [k for k, v in enumerate(values) if v is not None]
    excluded = len(values) - len(keep)
    if not keep:
        nan = float("nan")
        return Interval(nan, nan, nan, 0), excluded
    if not metric.corpus:
        return bootstrap_ci([values[k] for k in keep], n_boot=n_boot, seed=seed), excluded
    v, p, it = [values[k] for k in keep], [preds[k] for k in keep], [items[k] for k in keep]

    def stat(idx: np.ndarray) -> float:
        return metric.aggregate([v[i] for i in idx], [p[i] for i in idx], [it[i] for i in idx])

    return bootstrap_statistic(len(keep), stat, n_boot=max(100, n_boot // 4), seed=seed), excluded


def _named(models: Union[Mapping[str, Any], Sequence[Any]]) -> dict[str, Any]:
    if isinstance(models, Mapping):
        return dict(models)
    named: dict[str, Any] = {}
    for llm in models:
        name = getattr(llm, "name", None) or f"model{len(named)}"
        if name in named:
            raise ValueError(f"two models are named {name!r}: pass a dict {{name: llm}}")
        named[name] = llm
    return named


def evaluate(models: Union[Mapping[str, Any], Sequence[Any]], datasets: Mapping[str, Sequence[Any]],
             metrics: Iterable[Union[str, Metric]] = ("em",), *, max_new_tokens: int = 32,
             stop: Sequence[str] = ("\n",), batch_size: int = 16, n_boot: int = 1000, seed: int = 0,
             cache: bool = True, cache_root: Optional[Path] = None, progress: bool = True) -> EvalTable:
    """Evaluate every model on every dataset with every metric; one table row each, with 95 % intervals.

    ``models``: ``{name: llm}`` (or a list of LLMs, named by ``llm.name``); ``datasets``:
    ``{name: items}`` with items as ``suite.as_item`` accepts; ``metrics``: names from
    ``suite.METRICS`` or ``Metric`` objects (e.g. ``suite.judge_metric(judge)``).
    """
    store = Cache(cache_root, cache)
    metric_objs = [get_metric(x) for x in metrics]
    table = EvalTable()
    gen_settings = {"max_new_tokens": max_new_tokens, "stop": list(stop)}
    for model_name, llm in _named(models).items():
        mkey = model_fingerprint(llm)
        for data_name, data in datasets.items():
            items = as_items(data)
            dkey = data_fingerprint(items)
            preds: list[str] = [""] * len(items)
            if any(x.needs_generation for x in metric_objs):
                gkey = digest(["generate", mkey, dkey, gen_settings])
                hit = store.get("generations", gkey)
                if hit is None:
                    table.cache_misses += 1
                    preds = generate(llm, items, max_new_tokens=max_new_tokens, stop=stop,
                                     batch_size=batch_size, progress=progress)
                    store.put("generations", gkey, {"model": model_name, "data": data_name, "predictions": preds})
                else:
                    table.cache_hits += 1
                    preds = hit["predictions"]
                table.predictions[(model_name, data_name)] = preds
            for metric in metric_objs:
                skey = digest(["score", mkey, dkey, gen_settings if metric.needs_generation else None,
                              metric.name, metric.key, n_boot, seed])
                hit = store.get("scores", skey)
                if hit is None:
                    table.cache_misses += 1
                    values = metric.score(preds, items, llm)
                    iv, excluded = _interval(metric, values, preds, items, n_boot, seed)
                    hit = {"values": values, "value": iv.value, "low": iv.low, "high": iv.high,
                           "n": iv.n, "excluded": excluded}
                    store.put("scores", skey, hit)
                else:
                    table.cache_hits += 1
                table.values[(model_name, data_name, metric.name)] = hit["values"]
                table.rows.append({"model": model_name, "data": data_name, "metric": metric.name,
                                   **{k: hit[k] for k in ("value", "low", "high", "n", "excluded")}})
    return table
