"""``alphapulse report``: one self-contained HTML page (figures inlined as base64 PNG)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from signals.analytics import plots
from signals.analytics.verdict import calibration_verdict, pattern_verdict

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.82em;margin:.5em 0}
td,th{padding:.2em .55em;white-space:nowrap;border-bottom:1px solid #eee;text-align:right}
td.l,th.l{text-align:left}tr.few{color:#999}.verdict{background:#f6f6f0;padding:.8em 1em;
border-left:4px solid #b8860b}.fig{max-width:100%}.note{color:#666;font-size:.85em}
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img class="fig" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _ret(x: Any) -> str:
    return "–" if x is None else f"{100 * x:+.3f}%"


def _lift(x: Any) -> str:
    return "–" if x is None else f"{x:.2f}"


def _p(x: Any) -> str:
    return "–" if x is None else f"{x:.3g}"


def _pattern_rows(rows: Sequence[Mapping[str, Any]], extra: Sequence[str] = ()) -> str:
    head = "".join(
        f"<th{' class=l' if i < 3 else ''}>{h}</th>"
        for i, h in enumerate(
            [
                "pattern",
                "direction",
                "tf",
                *extra,
                "h",
                "n",
                "hit rate",
                "95% CI",
                "random entry",
                "lift",
                "p (HAC)",
                "mean ret",
                "median ret",
                "MFE",
                "MAE",
                "rank",
            ]
        )
    )
    body = []
    for r in rows:
        ci = "–" if r.get("ci_low") is None else f"{_pct(r['ci_low'])} – {_pct(r['ci_high'])}"
        cells = [
            f"<td class=l>{html.escape(str(r['pattern']).removeprefix('CDL'))}</td>",
            f"<td class=l>{r['direction']}</td>",
            f"<td class=l>{r['timeframe']}</td>",
            *(f"<td>{html.escape(str(r.get(e, '')))}</td>" for e in extra),
            f"<td>{r['horizon']}</td><td>{r['n']}</td><td>{_pct(r['hit_rate'])}</td>",
            f"<td>{ci}</td><td>{_pct(r['base_hit_rate'])}</td>",
            f"<td>{_lift(r.get('lift'))}</td>",
            f"<td>{_p(r.get('p_hit'))}</td><td>{_ret(r['mean_ret'])}</td>",
            f"<td>{_ret(r['median_ret'])}</td><td>{_ret(r['mean_mfe'])}</td>",
            f"<td>{_ret(r['mean_mae'])}</td>",
            f"<td>{'too few' if r.get('too_few') else r.get('rank') or '–'}</td>",
        ]
        cls = " class=few" if r.get("too_few") else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _cooc(rows: Sequence[Mapping[str, Any]]) -> str:
    head = (
        "<tr><th class=l>pair</th><th class=l>dir</th><th class=l>tf</th><th>h</th>"
        "<th>n both</th><th>hit both</th><th>n A alone</th><th>hit A alone</th>"
        "<th>n B alone</th><th>hit B alone</th></tr>"
    )
    body = []
    for r in rows:
        j, a, b = r["joint"], r["a_alone"], r["b_alone"]
        pair = f"{r['a'].removeprefix('CDL')} + {r['b'].removeprefix('CDL')}"
        cls = " class=few" if r.get("too_few") else ""
        body.append(
            f"<tr{cls}><td class=l>{html.escape(pair)}</td><td class=l>{r['direction']}</td>"
            f"<td class=l>{r['timeframe']}</td><td>{r['horizon']}</td><td>{j['n']}</td>"
            f"<td>{_pct(j['hit_rate'])}</td><td>{a['n']}</td><td>{_pct(a['hit_rate'])}</td>"
            f"<td>{b['n']}</td><td>{_pct(b['hit_rate'])}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _deciles(rows: Sequence[Mapping[str, Any]]) -> str:
    head = (
        "<tr><th>h</th><th>decile</th><th>score</th><th>n</th><th>hit rate</th><th>95% CI</th>"
        "<th>random entry</th><th>lift</th><th>mean ret</th></tr>"
    )
    body = "".join(
        f"<tr{' class=few' if r.get('too_few') else ''}><td>{r['horizon']}</td>"
        f"<td>{r['decile']}</td><td>{r['score_min']:.3f}–{r['score_max']:.3f}</td>"
        f"<td>{r['n']}</td><td>{_pct(r['hit_rate'])}</td>"
        f"<td>{_pct(r['ci_low'])} – {_pct(r['ci_high'])}</td><td>{_pct(r['base_hit_rate'])}</td>"
        f"<td>{'–' if r.get('lift') is None else format(r['lift'], '.2f')}</td>"
        f"<td>{_ret(r['mean_ret'])}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def _calibration(cal: Mapping[str, Any]) -> str:
    models = cal.get("models") or {}
    rows = "".join(
        f"<tr><td class=l>{name}</td><td>{m['brier']:.4f}</td><td>{m['log_loss']:.4f}</td>"
        f"<td>{m['ece']:.4f}</td></tr>"
        for name, m in models.items()
    )
    table = (
        "<table><tr><th class=l>model</th><th>Brier</th><th>log loss</th><th>ECE</th></tr>"
        f"{rows}</table>"
    )
    fig = (
        _img(
            plots.reliability_diagram(models, f"reliability, h={cal['horizon']} (out of sample)"),
            "reliability diagram",
        )
        if models
        else ""
    )
    return (
        f"<p class=verdict>{html.escape(calibration_verdict(cal))}</p>"
        f"<p class=note>Fit on the first {cal['train']['n']} candidates (base rate "
        f"{_pct(cal['train']['base_rate'])}), tested on the later {cal['test']['n']} "
        f"(base rate {_pct(cal['test']['base_rate'])}).</p>{table}{fig}"
    )


def render(
    stats: Mapping[str, Any],
    calibrations: Sequence[Mapping[str, Any]],
    title: str,
    source: str,
    top: int = 40,
) -> str:
    """The whole page."""
    params = stats["params"]
    patterns = stats["patterns"]
    ranked = [r for r in patterns if r.get("rank") is not None]
    few = [r for r in patterns if r.get("too_few")]
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p class=note>{html.escape(source)}</p>",
        f"<p class=verdict>{html.escape(pattern_verdict(patterns))}</p>",
        "<h2>Patterns ranked by lift</h2>",
        "<p class=note>Hit = the h-bar return in the pattern's direction is above the cost "
        f"({params['cost'] * 1e4:g} bps). Lift = hit rate / hit rate of a random entry (every "
        "bar of the same series and timeframe, same direction). p = "
        f"{html.escape(params['pvalue_method'])}. Groups with n &lt; {params['min_n']} are "
        "marked too few and not ranked.</p>",
    ]
    if ranked:
        parts.append(_img(plots.lift_chart(ranked, "best-ranked groups"), "lift chart"))
    parts.append(_pattern_rows(ranked[:top] + few[: max(0, top - len(ranked[:top])) or 10]))
    parts.append(f"<p class=note>{len(ranked)} ranked, {len(few)} too few.</p>")
    parts.append("<h2>Regime breakdown</h2>")
    for regime, rows in stats["regimes"].items():
        rr = [r for r in rows if r.get("rank") is not None][:15]
        parts.append(f"<h3>{regime}</h3>")
        parts.append(_pattern_rows(rr, extra=["value"]) if rr else "<p>nothing ranked</p>")
    parts.append("<h2>Co-occurrence (same bar, same direction)</h2>")
    parts.append(_cooc(stats["cooccurrence"][:25]))
    if stats["signal_deciles"]:
        parts.append("<h2>Signals by score decile</h2>")
        parts.append(_img(plots.decile_chart(stats["signal_deciles"], "signals"), "deciles"))
        parts.append(_deciles(stats["signal_deciles"]))
    parts.append("<h2>Calibrated score</h2>")
    parts.append(
        "<p class=note>A calibrated score is the estimated probability that the signal's "
        "h-bar return is positive (walk-forward: fit on the earlier part, tested on the "
        "later).</p>"
    )
    parts.extend(_calibration(c) for c in calibrations)
    parts.append("</body></html>")
    return "\n".join(parts)
