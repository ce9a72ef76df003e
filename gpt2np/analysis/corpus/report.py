"""The report of corpus mode: means with 95% intervals (on the logit scale of the statistic's
range), shares with Wilson intervals, histograms, top examples and each head's types, as one
JSON-ready dict."""

import math

from ... import analysis
from .. import findings
from ..findings import HOLDS, NOT_APPLICABLE, SINK_LAYERS, SPECIALIZED_BY
from .window import N_BINS, PREDICTIONS, STATISTICS, bin_edges

FORMAT, VERSION = "gpt2np-corpus-stats", 2    # 2: means' intervals on the logit scale (1: mean ± 1.96·s/√n)
ABOUT = {
    "entropy": "entropy of the query's attention row, in bits",
    "sink": "the query's weight on position 0",
    "previous": "the query's weight on the previous token",
    "self": "the query's weight on itself",
    "vw_sink_share": "the query's share of value-weighted attention ‖α·v·W_O‖ from position 0",
}
Z95 = 1.959963984540054             # the standard normal's 97.5% quantile: a two-sided 95% interval
MEAN_INTERVAL = ("95% interval on the logit scale of the statistic's range (delta method: "
                 "logit(m) ± 1.96·s/(√n·m(1−m)), back-transformed, so it stays inside the range; "
                 "m: the mean rescaled to 0–1, s: the standard deviation of the window means "
                 "rescaled alike, n: windows)")
SHARE_INTERVAL = "Wilson score interval, 95% (z = 1.96)"


# -- intervals -----------------------------------------------------------------------------------
def wilson_interval(k, n, z=Z95):
    """Wilson score interval of a proportion k/n -> (low, high); None when n = 0."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (0.0 if k == 0 else centre - half), (1.0 if k == n else centre + half)


def mean_interval(mean, sd, n, lo=0.0, hi=1.0, z=Z95):
    """A 95% interval for the mean of n values bounded to [lo, hi], inside [lo, hi] -> (low, high);
    None for fewer than 2 observations.

    The normal interval mean ± z·sd/√n leaves the range when the mean is near a bound and the
    windows vary (head 3.4: sink 0.040 [-0.008, 0.087] over 7 windows). Here the mean, rescaled to
    m in [0, 1], gets the normal interval on the logit scale, logit(m) ± z·s/(√n·m(1−m)) (the delta
    method: the standard error of logit(m) is that of m divided by m(1−m)), taken back through the
    logistic function. A bootstrap over windows would need every window's value; corpus mode keeps
    only streaming sums, and this needs only the mean and standard deviation. A mean at a bound
    means every value is there (sd 0): the interval is that point."""
    if n < 2:
        return None
    width = hi - lo
    m, s = (mean - lo) / width, sd / width
    if m <= 0.0 or m >= 1.0 or s == 0.0:
        return mean, mean
    centre = math.log(m / (1.0 - m))
    half = z * s / (math.sqrt(n) * m * (1.0 - m))
    back = lambda t: lo + width / (1.0 + math.exp(-t))   # noqa: E731
    return back(centre - half), back(centre + half)


def with_intervals(data):
    """A results file of an earlier version (1: normal intervals mean ± 1.96·s/√n, which could
    leave the range) with the means' intervals recomputed from its means and standard deviations
    -> the same dict, now of this VERSION. Files of this version are returned as they are."""
    if data.get("version", 1) >= VERSION:
        return data
    n = data["windows_measured"]
    ranges = {s["name"]: s["range"] for s in data["statistics"]}
    for head in data["heads"]:
        for name, st in head["stats"].items():
            if st["mean"] is not None:
                st["interval"] = mean_interval(st["mean"], st["sd"] or 0.0, n, *ranges[name])
    data["intervals"]["mean"] = MEAN_INTERVAL
    data["upgraded_from_version"], data["version"] = data.get("version", 1), VERSION
    return data



# -- the report ----------------------------------------------------------------------------------
def report(model, corpus, settings, totals, fingerprint, spec=None):
    """The results as a JSON-ready dict: what `--out` holds (plus "state", "run": see `measure`)."""
    cfg, n = model.config, totals.windows
    sd = totals.sd()
    edges = bin_edges(settings["window"])
    ranges = {name: (float(e[0]), float(e[-1])) for name, e in edges.items()}
    used = set()

    def top_list(top, s, L, h, with_position):
        rows = []
        for value, window, position in zip(*(x[s, L, h] for x in top)):
            if window < 0:
                continue
            used.add(int(window))
            row = {"window": int(window), "value": float(value)}
            if with_position:
                row["position"] = int(position)
            rows.append(row)
        return rows

    heads = []
    for L in range(cfg.n_layer):
        for h in range(cfg.n_head):
            counts = totals.types[L, h]
            row = {"head": f"{L}.{h}", "layer": L, "index": h,
                   "type": analysis.HEAD_TYPES[int(counts.argmax())] if n else None,
                   "types": {t: int(c) for t, c in zip(analysis.HEAD_TYPES, counts) if c},
                   "stats": {}, "top_windows": {}, "top_positions": {}}
            for s, name in enumerate(STATISTICS):
                mean, dev = float(totals.mean[s, L, h]), float(sd[s, L, h])
                row["stats"][name] = {"mean": mean if n else None, "sd": dev if n > 1 else None,
                                      "interval": mean_interval(mean, dev, n, *ranges[name]),
                                      "histogram": totals.histogram[s, L, h].tolist()}
                row["top_windows"][name] = top_list(totals.top_windows, s, L, h, False)
                row["top_positions"][name] = top_list(totals.top_positions, s, L, h, True)
            heads.append(row)

    return {
        "format": FORMAT, "version": VERSION,
        "complete": n == len(corpus.windows),
        "model": {"name": model.info.name, "origin": model.info.origin, "spec": spec,
                  "n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_positions": cfg.n_positions,
                  "engine": model.engine},
        "settings": settings,
        "input": {"sources": [{"name": name,
                               "documents": sum(1 for d in corpus.documents if d[0] == s),
                               "tokens": int(sum(len(d[2]) for d in corpus.documents if d[0] == s))}
                              for s, name in enumerate(corpus.names)],
                  "documents": len(corpus.documents),
                  "tokens": int(sum(len(d[2]) for d in corpus.documents)),
                  "windows": len(corpus.windows), "skipped_windows": corpus.skipped,
                  "fingerprint": fingerprint},
        "windows_measured": n,
        "statistics": [{"name": s, "about": ABOUT[s], "range": [e[0], e[-1]],
                        "unit": "bits" if s == "entropy" else "share", "bins": N_BINS}
                       for s, e in edges.items()],
        "intervals": {"mean": MEAN_INTERVAL, "share": SHARE_INTERVAL},
        "predictions": prediction_rows(totals, cfg),
        "heads": heads,
        "published_roles": published_roles(cfg, heads),
        "windows": {str(k): window_view(model, corpus, k) for k in sorted(used)},
    }


def prediction_rows(totals, cfg):
    rows, d, n = [], totals.detail, totals.windows

    def per_layer(counts, layers):
        return {str(L): float(counts[L] / n) for L in layers if n}
    measured = {
        1: {"max_above_diagonal": d["above_diagonal"]},
        2: {"min_first_weight": d["first_weight"], "max_first_entropy_bits": d["first_entropy"]},
        3: {"mean_heads_with_sink_per_layer": per_layer(
            d["sink_heads"], [L for L in SINK_LAYERS if L < cfg.n_layer])},
        5: {"mean_distinct_types_per_layer": per_layer(
            d["distinct_types"], range(min(SPECIALIZED_BY + 1, cfg.n_layer)))},
    }
    for i, text in PREDICTIONS.items():
        v = totals.verdicts[i]
        holds, applies = v[HOLDS], v[HOLDS] + v[findings.FAILS]
        rows.append({"id": i, "prediction": text, "windows": applies, "holds": holds,
                     "share": holds / applies if applies else None,
                     "interval": wilson_interval(holds, applies),
                     "not_applicable": v[NOT_APPLICABLE], "measured": measured[i]})
    return rows


def published_roles(cfg, heads):
    """For GPT-2 small: the published roles' heads with their corpus figures, to compare with."""
    if not findings.is_gpt2_small(cfg):
        return {"applicable": False, "note": "not GPT-2 small's shape: no published roles to compare",
                "roles": []}
    by_name = {h["head"]: h for h in heads}
    return {"applicable": True,
            "note": "heads named in the literature for GPT-2 small, with what this corpus measured; "
                    "induction and IOI roles are measured by their own probes (gpt2np findings)",
            "roles": [{"role": role, "source": source, "measure": measure,
                       "heads": [{"head": name, "type": by_name[name]["type"],
                                  **{s: by_name[name]["stats"][s]["mean"] for s in STATISTICS}}
                                 for name in names]}
                      for role, names, measure, source in findings.PUBLISHED_ROLES]}


def window_view(model, corpus, k):
    """What the report shows of window k: where it comes from, its tokens, and the text the viewer
    reruns to show it. When that text tokenizes differently, `view_positions` maps each window
    position to the viewer's position (by character offset; null where none matches)."""
    ids = corpus.ids(k).tolist()
    d, start, _ = corpus.windows[k]
    source, doc = corpus.documents[d][:2]
    bos = corpus.bos_id is not None
    text_ids = ids[1:] if bos else ids
    text = model.tokenizer.decode(text_ids)
    view = {"source": corpus.names[source], "document": doc, "start": start, "bos": bos,
            "tokens": model.token_strings(ids), "text": text}
    again = model.tokenizer.encode(text)
    if again != text_ids:
        def ends(seq):                                   # character offset where each token ends
            return [len(model.tokenizer.decode(seq[:j + 1])) for j in range(len(seq))]
        mine, theirs = ends(text_ids), ends(again)
        mapped = [theirs.index(e) + bos if e in theirs else None for e in mine]
        view["view_positions"] = ([0] if bos else []) + mapped
    return view
