"""Reading the results: goals, the stdout table, ``bench.json`` and ``bench.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .timing import median

STAGE_LABELS = {
    "read_files": "raw read, plain file reads",
    "read_dali": "raw read, DALI reader",
    "decode": "decode only (ceiling)",
    "decode_resize": "decode + crop/resize",
    "loader_dali": "DALI loader (full)",
    "loader_dali_no_parity": "DALI loader, pil_parity off",
    "loader_baseline": "baseline loader (full)",
}

# issue goals: (preset, ratio or absolute key, threshold)
CPU_GOALS = [("train-224", "dali_over_baseline", 2.0), ("train-224", "dali_over_decode", 0.8),
             ("eval-224", "dali_over_baseline", 1.5)]
GPU_GOALS = [("train-224", "loader_dali", 20_000), ("eval-224", "loader_dali", 25_000),
             ("eval-384", "loader_dali", 12_000)]
TTFB_GOAL_S = 2.0


def ratios(stages: dict[str, Any]) -> dict[str, float | None]:
    """project/baseline and project/decode-only ceiling (medians), also for pil_parity off."""
    def r(a: str, b: str) -> float | None:
        x, y = median(stages.get(a, {}).get("img_s")), median(stages.get(b, {}).get("img_s"))
        return round(x / y, 3) if x and y else None

    out = {"dali_over_baseline": r("loader_dali", "loader_baseline"), "dali_over_decode": r("loader_dali", "decode"),
           "decode_resize_over_decode": r("decode_resize", "decode")}
    if "loader_dali_no_parity" in stages:
        out["no_parity_over_baseline"] = r("loader_dali_no_parity", "loader_baseline")
        out["no_parity_over_decode"] = r("loader_dali_no_parity", "decode")
    return out


MIN_SAMPLES_FOR_GOALS = 1000  # smaller sets (demo, CI) time a batch or two: no verdicts


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals that this run measured, each with its value and whether it is met."""
    if result["settings"].get("samples", MIN_SAMPLES_FOR_GOALS) < MIN_SAMPLES_FOR_GOALS:
        return []
    gpu = result["settings"]["device"] == "gpu"
    out = []
    for preset, key, target in GPU_GOALS if gpu else CPU_GOALS:
        run = result["presets"].get(preset)
        if run is None:
            continue
        if gpu:
            value = median(run["stages"].get(key, {}).get("img_s"))
            what = f"{preset} DALI loader img/s >= {target:,}"
        else:
            value = run["ratios"].get(key)
            what = f"{preset} {key.replace('_over_', '/')} >= {target}x"
        if value is None:  # not measured in this run
            continue
        out.append({"goal": what, "value": value, "met": value >= target})
        if not gpu and preset.startswith("eval") and key == "dali_over_baseline":
            alt = run["ratios"].get("no_parity_over_baseline")
            if alt is not None:
                out.append({"goal": f"{preset} (pil_parity off) DALI/baseline >= {target}x", "value": alt,
                            "met": alt >= target})
    ttfb = result.get("first_batch")
    if ttfb and ttfb.get("shards", 0) >= 1024:
        value = median(ttfb.get("dali_with_idx"))
        if value is not None:
            out.append({"goal": f"time to first batch, {ttfb['shards']} shards with .idx <= {TTFB_GOAL_S} s",
                        "value": value, "met": value <= TTFB_GOAL_S})
    return out


def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def table(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    gpu = ", ".join(d["name"] for d in m["gpu"].get("devices", [])) or "none"
    lines = [f"machine: {m['cpu_model']}, {s['cores']} of {m['cpus_available']} cores, GPU: {gpu}, "
             f"DALI {m['versions'].get('dali')}, torch {m['versions'].get('torch')}",
             f"shards: {s['root']} ({s['split']}, {s['samples']:,} samples, "
             f"{_fmt(s.get('jpeg_bytes_per_sample'))} B/JPEG), device {s['device']}, {s['repeats']} repeats, "
             f"load {m.get('load_average_start')} -> {m.get('load_average_end')}", ""]
    head = f"{'preset':10s} {'stage':32s} {'img/s':>9s} {'min':>9s} {'max':>9s} {'MB/s':>8s}"
    lines += [head, "-" * len(head)]
    for name, run in result["presets"].items():
        lines.append(f"{name:10s} (batch {run['config']['batch_size']}, DALI threads {run['config']['threads']}, "
                     f"baseline workers {run['config']['num_workers']})")
        for key, st in run["stages"].items():
            if "img_s" not in st:
                continue
            label = STAGE_LABELS.get(key, key)
            mb = median(st.get("mb_s"))
            lines.append(f"{'':10s} {label:32s} {_fmt(st['img_s']['median']):>9s} "
                         f"{_fmt(st['img_s']['min']):>9s} {_fmt(st['img_s']['max']):>9s} {_fmt(mb):>8s}")
        for key, value in run["ratios"].items():
            if value is not None:
                lines.append(f"{'':10s} {key.replace('_over_', ' / '):32s} {value:>8.2f}x")
        rows = (run.get("ops") or {}).get("rows")
        if rows:
            lines.append(f"{'':10s} inside the DALI pipeline (CPU ms per image, all threads; wall img/s):")
            for op, v in rows.items():
                lines.append(f"{'':10s}   {op:40s} {v['cpu_ms_per_img']:6.2f} ms {v['img_s']:>9,.0f}")
        model = run.get("model")
        if model:
            for m_run in model:
                lines.append(f"{'':10s} {'model ' + m_run['model'] + ' ' + m_run['step'] + ' alone':32s} "
                             f"{_fmt(median(m_run['model_alone_img_s'])):>9s}")
                lines.append(f"{'':10s} {'  fed by ' + m_run['backend']:32s} {_fmt(median(m_run['fed_img_s'])):>9s}"
                             f"   ({_fmt(m_run['fed_over_alone'], 2)} of alone: "
                             f"{'keeps up' if m_run['keeps_up'] else 'LOADER-BOUND'})")
    ttfb = result.get("first_batch")
    if ttfb:
        lines += ["", f"time to first batch, {ttfb['shards']} shards x {ttfb['samples_per_shard']} samples "
                      f"({ttfb['mode']}, batch {ttfb['batch_size']}):"]
        for key in ("dali_with_idx", "dali_without_idx", "baseline"):
            if key in ttfb:
                v = ttfb[key]
                lines.append(f"  {key:18s} {v['median']:7.2f} s  (min {v['min']:.2f}, max {v['max']:.2f})")
    for name, tune in (result.get("autotune") or {}).items():
        lines += ["", f"auto-tune {name}: {tune['chosen']} -> {_fmt(tune['img_s'])} img/s"
                      + (f", written to {tune['preset']}" if tune.get("preset") else "")]
    if result["settings"].get("samples", MIN_SAMPLES_FOR_GOALS) < MIN_SAMPLES_FOR_GOALS:
        lines += ["", f"goals: not judged on fewer than {MIN_SAMPLES_FOR_GOALS:,} samples"]
    elif result.get("goals"):
        lines += ["", "goals:"]
        for g in result["goals"]:
            lines.append(f"  [{'met' if g['met'] else 'NOT met'}] {g['goal']}: {_fmt(g['value'], 2)}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


def plot(result: dict[str, Any], path: str | Path) -> Path:
    """Bars of every stage's median img/s (min-max as error bars) per preset, time to first batch,
    and the auto-tune trials."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    presets = {k: v for k, v in result["presets"].items()
               if any("img_s" in st and st["img_s"]["median"] for st in v["stages"].values())}
    ops = {k: v["ops"]["rows"] for k, v in result["presets"].items() if (v.get("ops") or {}).get("rows")}
    ttfb = result.get("first_batch")
    tunes = result.get("autotune") or {}
    panels = max(1, len(presets) + len(ops) + bool(ttfb) + bool(tunes))
    fig, axes = plt.subplots(panels, 1, figsize=(9, 2.2 + 2.4 * panels), squeeze=False)
    axes = list(axes[:, 0])
    colors = {"read": "#9e9e9e", "decode": "#4c72b0", "loader_dali": "#55a868", "loader_baseline": "#c44e52"}
    for ax, (name, run) in zip(axes, presets.items(), strict=False):
        items = [(k, v) for k, v in run["stages"].items() if "img_s" in v and v["img_s"]["median"]]
        labels = [STAGE_LABELS.get(k, k) for k, _ in items]
        med = [v["img_s"]["median"] for _, v in items]
        err = [[m - v["img_s"]["min"] for m, (_, v) in zip(med, items, strict=True)],
               [v["img_s"]["max"] - m for m, (_, v) in zip(med, items, strict=True)]]
        color = [next((c for p, c in colors.items() if k.startswith(p)), "#8172b2") for k, _ in items]
        ax.barh(labels, med, xerr=err, color=color, capsize=3)
        ax.set_xscale("log")
        ax.invert_yaxis()
        for y, m in enumerate(med):
            ax.text(m, y, f" {m:,.0f}", va="center", fontsize=8)
        r = run["ratios"]
        ax.set_title(f"{name}: DALI/baseline {_fmt(r.get('dali_over_baseline'), 2)}x, "
                     f"DALI/decode ceiling {_fmt(r.get('dali_over_decode'), 2)}x", fontsize=10)
        ax.set_xlabel("images/s (median of repeats, bars: min-max; log scale)")
    i = len(presets)
    for name, rows in ops.items():
        ax = axes[i]
        ax.barh(list(rows), [v["cpu_ms_per_img"] for v in rows.values()], color="#64b5cd")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{name}: inside the DALI pipeline, CPU time per image (all threads)", fontsize=10)
        ax.set_xlabel("CPU ms per image")
        i += 1
    if ttfb:
        ax = axes[i]
        keys = [k for k in ("dali_with_idx", "dali_without_idx", "baseline") if k in ttfb]
        med = [ttfb[k]["median"] for k in keys]
        ax.barh(keys, med, xerr=[[m - ttfb[k]["min"] for m, k in zip(med, keys, strict=True)],
                                 [ttfb[k]["max"] - m for m, k in zip(med, keys, strict=True)]],
                color="#dd8452", capsize=3)
        ax.axvline(TTFB_GOAL_S, color="k", ls="--", lw=0.8)
        ax.invert_yaxis()
        ax.set_title(f"time to first batch, {ttfb['shards']} shards (dashed: goal with .idx)", fontsize=10)
        ax.set_xlabel("seconds")
        i += 1
    if tunes:
        ax = axes[i]
        for name, tune in tunes.items():
            ax.plot([t["img_s"] for t in tune["trials"]], marker="o", label=name)
        ax.set_title("auto-tune trials (one knob at a time)", fontsize=10)
        ax.set_xlabel("trial")
        ax.set_ylabel("img/s")
        ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"imagenet-pipe bench: {m['cpu_model']}, {result['settings']['cores']} cores, "
                 f"device {result['settings']['device']}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
