"""Reading the results: ratios, the stdout table, ``bench.json`` and ``bench.png``.

The profiler reports measurements and ratios only; what a machine should reach is written down in
BENCHMARKS.md, next to the machine it was measured on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..files import atomic_write
from .timing import STEADY_QUEUES, median

STAGE_LABELS = {
    "read_files": "raw read, plain file reads",
    "read_dali": "raw read, DALI reader",
    "decode": "decode only (ceiling)",
    "decode_resize": "decode + crop/resize",
    "loader_dali": "DALI loader (full)",
    "loader_dali_no_parity": "DALI loader, pil_parity off",
    "loader_baseline": "baseline loader (full)",
}

# ratio -> (numerator stage, denominator stage), medians of img/s
RATIOS = {"dali_over_baseline": ("loader_dali", "loader_baseline"), "dali_over_decode": ("loader_dali", "decode"),
          "decode_resize_over_decode": ("decode_resize", "decode"),
          "no_parity_over_baseline": ("loader_dali_no_parity", "loader_baseline"),
          "no_parity_over_decode": ("loader_dali_no_parity", "decode")}


def _too_short(stage: dict[str, Any]) -> str | None:
    """Why a stage's timed window cannot be compared with another's, or None."""
    w = stage.get("window")
    if not w or w["steady"]:
        return None
    return (f"{w['timed_batches']} batches timed after {w['warmup_batches']} warm-up, the loader holds "
            f"{w['queue_batches']} ready (needs a warm-up above that and {STEADY_QUEUES}x that timed)")


def _ratio_inputs(stages: dict[str, Any]):
    for key, (a, b) in RATIOS.items():
        if key.startswith("no_parity") and a not in stages:
            continue
        sa, sb = stages.get(a, {}), stages.get(b, {})
        yield key, a, b, sa, sb, median(sa.get("img_s")), median(sb.get("img_s"))


def ratios(stages: dict[str, Any]) -> dict[str, float | None]:
    """project/baseline and project/decode-only ceiling (medians), also for pil_parity off; None
    where a stage is missing or was timed in a window too short to compare (:func:`withheld_ratios`)."""
    return {key: round(x / y, 3) if x and y and not (_too_short(sa) or _too_short(sb)) else None
            for key, _, _, sa, sb, x, y in _ratio_inputs(stages)}


def withheld_ratios(stages: dict[str, Any]) -> dict[str, str]:
    """Ratios measured but not computed, each with the reason: the split held too few batches for a
    steady-state window."""
    out = {}
    for key, a, b, sa, sb, x, y in _ratio_inputs(stages):
        reasons = [f"{name}: {why}" for name, stage in ((a, sa), (b, sb)) if (why := _too_short(stage))]
        if x and y and reasons:
            out[key] = "; ".join(reasons)
    return out


def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _header(result: dict[str, Any]) -> list[str]:
    m, s = result["machine"], result["settings"]
    gpu = ", ".join(d["name"] for d in m["gpu"].get("devices", [])) or "none"
    return [f"machine: {m['cpu_model']}, {s['cores']} of {m['cpus_available']} cores, GPU: {gpu}, "
            f"DALI {m['versions'].get('dali')}, torch {m['versions'].get('torch')}",
            f"shards: {s['root']} ({s['split']}, {s['samples']:,} samples, "
            f"{_fmt(s.get('jpeg_bytes_per_sample'))} B/JPEG), device {s['device']}, {s['repeats']} repeats, "
            f"load {m.get('load_average_start')} -> {m.get('load_average_end')}"]


def _backend_lines(report: dict[str, Any] | None) -> list[str]:
    if not report:
        return []
    if "error" in report:
        return ["", f"decoder backends: not measured ({report['error']})"]
    lines = ["", f"decoder backends that ran: {', '.join(report['ran'])} (device {report['device']})"]
    probe = report.get("nvjpeg")
    if probe:
        hw = (f"hardware decoder: {probe.get('engines', '?')} engine(s)" if probe["hardware_decoder"]
              else f"no hardware decoder ({probe.get('why', 'not loaded')})")
        lines.append(f"  libnvjpeg {probe.get('version', '-')} from {probe['library']}; {hw}")
    for name, row in report["rows"].items():
        util = row.get("utilisation") or {}
        busy, jpeg = util.get("gpu_busy_pct"), util.get("jpeg_engine_pct")
        seen = (f"; GPU busy {busy['mean']:g} %, JPEG engine {jpeg['mean']:g} % (mean, {util['source']})"
                if busy and jpeg else f"; utilisation: {util.get('source') or 'unavailable'}" if util else "")
        lines.append(f"  {name:28s} {row['cpu_ms_per_img']:7.3f} CPU ms/img {row['img_s']:>9,.0f} img/s{seen}")
    lines += [f"  FALLBACK: {f}" for f in report["fallback"]]
    return lines


def _memory_line(memory: dict[str, Any]) -> str:
    if "error" in memory:
        return f"{'':10s} memory: not measured ({memory['error']})"
    run = memory["running"]
    parts = [f"host RSS {_signed(run.get('rss_mb'))}",
             f"driver-mapped (pinned) host {_signed(run.get('driver_mapped_host_mb'))}"]
    if "gpu_used_mb" in run:
        parts.append(f"GPU {_signed(run['gpu_used_mb'])} (torch {_signed(run.get('torch_allocated_mb'))})")
    return f"{'':10s} DALI loader memory, running vs before, MiB: " + ", ".join(parts)


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+,.0f}"


def _preset_lines(name: str, run: dict[str, Any]) -> list[str]:
    cfg = run["config"]
    lines = [f"{name:10s} (batch {cfg['batch_size']}, DALI threads {cfg['threads']}, "
             f"baseline workers {cfg['num_workers']})"]
    for key, st in run["stages"].items():
        label = STAGE_LABELS.get(key, key)
        if "img_s" not in st:
            lines.append(f"{'':10s} {label:32s} FAILED: {st.get('error', 'no result')}")
            continue
        w = st.get("window")
        timed = "-" if not w else f"{w['timed_batches']}{'' if w['steady'] else '*'}"
        lines.append(f"{'':10s} {label:32s} {_fmt(st['img_s']['median']):>9s} {_fmt(st['img_s']['min']):>9s} "
                     f"{_fmt(st['img_s']['max']):>9s} {_fmt(median(st.get('mb_s'))):>8s} {timed:>6s}")
    withheld = run.get("ratios_withheld", {})
    for key, value in run["ratios"].items():
        label = key.replace("_over_", " / ")
        if value is not None:
            lines.append(f"{'':10s} {label:32s} {value:>8.2f}x")
        elif key in withheld:
            lines.append(f"{'':10s} {label:32s} not judged: window too short for the split (* above)")
    if run.get("memory"):
        lines.append(_memory_line(run["memory"]))
    rows = (run.get("ops") or {}).get("rows")
    if rows:
        lines.append(f"{'':10s} inside the DALI pipeline (CPU ms per image, all threads; wall img/s):")
        lines += [f"{'':10s}   {op:40s} {v['cpu_ms_per_img']:6.2f} ms {v['img_s']:>9,.0f}" for op, v in rows.items()]
    for m in run.get("model") or []:
        lines += _model_lines(m)
    return lines


def _model_lines(m: dict[str, Any]) -> list[str]:
    if "error" in m:
        return [f"{'':10s} model step: FAILED: {m['error']}"]
    ratio = m["fed_over_alone"]
    verdict = ("not judged: window too short for the split" if ratio is None
               else f"{ratio:.2f} of alone: {'keeps up' if m['keeps_up'] else 'LOADER-BOUND'}")
    alone = "model " + m["model"] + " " + m["step"] + " alone"
    return [f"{'':10s} {alone:32s} {_fmt(median(m['model_alone_img_s'])):>9s}",
            f"{'':10s} {'  fed by ' + m['backend']:32s} {_fmt(median(m['fed_img_s'])):>9s}   ({verdict})"]


def _ttfb_lines(ttfb: dict[str, Any] | None) -> list[str]:
    if not ttfb:
        return []
    if "error" in ttfb:
        return ["", f"time to first batch: FAILED: {ttfb['error']}"]
    lines = ["", f"time to first batch, {ttfb['shards']} shards x {ttfb['samples_per_shard']} samples "
                 f"({ttfb['mode']}, batch {ttfb['batch_size']}):"]
    for key in ("dali_with_idx", "dali_without_idx", "baseline"):
        if key in ttfb:
            v = ttfb[key]
            lines.append(f"  {key:18s} {v['median']:7.2f} s  (min {v['min']:.2f}, max {v['max']:.2f})")
    return lines


def table(result: dict[str, Any]) -> str:
    lines = [*_header(result), *_backend_lines(result.get("decoder_backends")), ""]
    head = f"{'preset':10s} {'stage':32s} {'img/s':>9s} {'min':>9s} {'max':>9s} {'MB/s':>8s} {'timed':>6s}"
    lines += [head, "-" * len(head)]
    for name, run in result["presets"].items():
        lines += _preset_lines(name, run)
    lines.append(f"(timed: batches per repeat; * a window too short for steady state: warm-up must drain the "
                 f"loader's prefetch queue and {STEADY_QUEUES} queues be timed)")
    lines += _ttfb_lines(result.get("first_batch"))
    for name, tune in (result.get("autotune") or {}).items():
        lines += ["", f"auto-tune {name}: FAILED: {tune['error']}" if "error" in tune else
                  f"auto-tune {name}: {tune['chosen']} -> {_fmt(tune['img_s'])} img/s"
                  + (f", written to {tune['preset']}" if tune.get("preset") else "")]
    if result.get("errors"):
        lines += ["", f"{len(result['errors'])} stage(s) failed and were skipped (details in bench.json):"]
        lines += [f"  {e['stage']}: {e['error']}" for e in result["errors"]]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Atomically (temp + rename): a run killed while writing leaves the previous complete file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(result, indent=1, default=str) + "\n")
    return path


def plot(result: dict[str, Any], path: str | Path) -> Path | None:
    """Bars of every stage's median img/s (min-max as error bars) per preset, time to first batch,
    and the auto-tune trials. None when matplotlib is not installed (it is the ``plot`` extra)."""
    try:
        import matplotlib
    except ImportError:
        return None

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    presets = {k: v for k, v in result["presets"].items()
               if any("img_s" in st and st["img_s"]["median"] for st in v["stages"].values())}
    ops = {k: v["ops"]["rows"] for k, v in result["presets"].items() if (v.get("ops") or {}).get("rows")}
    ttfb = result.get("first_batch")
    ttfb = ttfb if ttfb and "error" not in ttfb else None
    tunes = {k: v for k, v in (result.get("autotune") or {}).items() if "trials" in v}
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
        ax.invert_yaxis()
        ax.set_title(f"time to first batch, {ttfb['shards']} shards", fontsize=10)
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
