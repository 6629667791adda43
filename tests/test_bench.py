"""Smoke tests of ``imagenet-pipe bench`` on a tiny shard set: every stage runs, the JSON holds the
machine record and every result (written after every stage, failures recorded), the plot is a PNG
(and its absence without matplotlib costs nothing else), and a tuned preset loads. No wall times
are asserted: timing on a shared CI machine is noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from imagenet_pipe.bench import BenchOptions, run_bench
from imagenet_pipe.bench.backends import ROWS, judge_backends
from imagenet_pipe.bench.data import make_many_shards
from imagenet_pipe.bench.gpu import parse_dmon
from imagenet_pipe.bench.report import ratios, table, withheld_ratios
from imagenet_pipe.bench.timing import STEADY_QUEUES, steady_window, summary, time_epochs, time_stream
from imagenet_pipe.cli import main
from imagenet_pipe.errors import OptionsError
from imagenet_pipe.format import idx_name, index_tar, read_idx
from imagenet_pipe.loaders import build_loader

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STAGE_KEYS = {"img_s", "backend"}
SUMMARY_KEYS = {"median", "min", "max", "q1", "q3", "values", "unit"}


@pytest.fixture(scope="module")
def bench_result(shards1k, tmp_path_factory):
    """One run of every stage, both presets kinds and a narrowed auto-tune. Prefetch 1
    and 2 threads / workers: a pass of the 47-sample split (11 batches of 4) holds a steady window
    for both loaders (DALI: queue 1; baseline: 2 workers x 1)."""
    out = tmp_path_factory.mktemp("bench-out")
    options = BenchOptions(presets=("train-224", "eval-224"), split="train", device="cpu", batch_size=4, threads=2,
                           workers=2, prefetch=1, repeats=2, warmup=1, batches=2,
                           stages=("backends", "read", "decode", "resize", "loader", "baseline", "memory", "ttfb",
                                   "ops"),
                           ttfb_shards=12, ttfb_per_shard=2, ttfb_repeats=1, tune=True,
                           tune_space={"num_threads": [1, 2], "prefetch": [1], "batch_size": [4]},
                           out_dir=out, command="test", print_table=False)
    result = run_bench(shards1k, options, log=lambda _m: None)
    return result, out


def test_ops_stage_costs_each_augmentation_of_a_recipe(shards1k):
    """Training presets: one row per augmentation op, the preset's layers, erasing, decisions, mixing."""
    from imagenet_pipe.bench.ops import op_costs
    from imagenet_pipe.bench.stages import StageContext
    from imagenet_pipe.loaders import ShardSet, resolve_config

    cfg = resolve_config("train-224-rand", device="cpu", batch_size=4, num_threads=2, size=64)
    rows = op_costs(StageContext(ShardSet.open(shards1k, "train"), cfg, None, warmup=1, batches=2, repeats=1))["rows"]
    families = ("affine", "brightness", "color", "contrast", "sharpness", "invert", "solarize", "solarize_add",
                "posterize", "autocontrast", "equalize", "blur")
    for kind in ("augment op", "pillow op"):  # the op in DALI, and in Pillow as the baseline runs it
        assert all(any(k.startswith((f"{kind} {f} ", f"{kind} {f},")) for k in rows) for f in families), kind
    assert any("augmentation layers" in k for k in rows) and any("random erasing (pixel" in k for k in rows)
    assert "python: + the recipe's decisions" in rows and "torch: mixup/cutmix + soft targets (float16 batch)" in rows
    assert all(v["cpu_ms_per_img"] > 0 for v in rows.values())


def test_every_stage_is_measured_for_every_preset(bench_result):
    result, _ = bench_result
    assert set(result["presets"]) == {"train-224", "eval-224"}
    for name, run in result["presets"].items():
        stages = run["stages"]
        expected = {"read_files", "read_dali", "decode", "decode_resize", "loader_dali", "loader_baseline"}
        if name.startswith("eval"):
            expected.add("loader_dali_no_parity")  # pil_parity measured both ways
        assert expected <= set(stages)
        for key in expected:
            s = stages[key]["img_s"]
            assert set(s) == SUMMARY_KEYS and len(s["values"]) == 2  # repeats, warm-up excluded
            assert s["min"] <= s["median"] <= s["max"] and s["min"] > 0
        assert stages["read_files"]["mb_s"]["median"] > 0 and stages["read_dali"]["mb_s"]["median"] > 0
        assert stages["loader_dali"]["threads_or_workers"] == stages["loader_baseline"]["threads_or_workers"]
        for key in expected - {"read_files"}:  # every timed window is recorded, and steady here
            w = stages[key]["window"]
            assert w["steady"] and w["warmup_batches"] > w["queue_batches"], (key, w)
            assert w["timed_batches"] >= STEADY_QUEUES * w["queue_batches"], (key, w)
        assert stages["loader_baseline"]["window"]["queue_batches"] == 2  # 2 workers x prefetch 1
        r = run["ratios"]
        assert r["dali_over_baseline"] > 0 and r["dali_over_decode"] > 0 and run["ratios_withheld"] == {}
        ops = run["ops"]["rows"]  # CPU cost of each operator choice
        assert "decode whole" in ops and all(v["cpu_ms_per_img"] > 0 for v in ops.values())
        assert ("+ ROI resize, parity on" in ops) == name.startswith("eval")
        memory = run["memory"]  # what one DALI loader holds (CPU: process RSS; no GPU keys)
        assert memory["before"]["rss_mb"] > 0 and memory["batches"] >= 1
        for phase in ("built", "running", "closed"):
            assert isinstance(memory[phase]["rss_mb"], float) and "gpu_used_mb" not in memory[phase]


def test_model_step_fed_by_both_loaders(shards1k):
    options = BenchOptions(presets=("eval-224",), device="cpu", batch_size=4, threads=2, workers=2, prefetch=1,
                           repeats=1, warmup=1, batches=2, stages=(), model_step="fwd",
                           model_backends=("dali", "baseline"), out_dir=None, print_table=False)
    result = run_bench(shards1k, options, log=lambda _m: None)
    models = result["presets"]["eval-224"]["model"]
    assert [m["backend"] for m in models] == ["dali", "baseline"] and result["errors"] == []
    for m in models:
        assert m["step"] == "fwd" and m["model_alone_img_s"]["median"] > 0 and m["fed_img_s"]["median"] > 0
        assert m["window"]["steady"] and isinstance(m["keeps_up"], bool) and m["fed_over_alone"] > 0


def test_json_holds_the_machine_record_and_every_result(bench_result):
    result, out = bench_result
    data = json.loads((out / "bench.json").read_text())
    assert data["schema"] == "imagenet-pipe-bench/2" and data["command"] == "test"
    assert data["partial"] is False and data["errors"] == [] and result["outputs"]["png"].endswith("bench.png")
    m = data["machine"]
    for key in ("cpu_model", "cpu_logical", "cores_used", "memory_gib", "gpu", "versions", "storage", "date",
                "load_average_start", "load_average_end"):
        assert key in m, key
    assert m["versions"]["dali"] and m["versions"]["torch"]
    assert "fstype" in m["storage"] or "path" in m["storage"]
    s = data["settings"]
    assert s["device"] == "cpu" and s["cores"] >= 1 and s["samples"] > 0
    assert data["presets"].keys() == result["presets"].keys()
    ttfb = data["first_batch"]
    assert ttfb["shards"] == 12
    for key in ("dali_with_idx", "dali_without_idx", "baseline"):
        assert ttfb[key]["median"] > 0
    assert "goals" not in data  # targets live in BENCHMARKS.md, not in the tool
    backends = data["decoder_backends"]  # CPU pipelines: the CPU decoder, and nothing flagged
    assert backends["device"] == "cpu" and backends["ran"] == ["cpu"] and backends["fallback"] == []
    assert backends["rows"]["cpu decoder"]["cpu_ms_per_img"] > 0


def test_table_reports_measurements_not_verdicts(bench_result):
    result, _ = bench_result
    text = table(result)
    assert "decoder backends that ran: cpu" in text and "dali / baseline" in text
    assert "DALI loader memory" in text
    assert "goal" not in text.lower() and "NOT met" not in text


def test_plot_is_a_png(bench_result):
    _, out = bench_result
    png = out / "bench.png"
    assert png.exists() and png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000


def test_tuned_preset_is_accepted_by_the_loader(bench_result, shards1k):
    result, out = bench_result
    tune = result["autotune"]["train-224"]
    path = out / "tuned-train-224-cpu.yaml"
    assert tune["preset"] == str(path) and path.exists()
    assert len(tune["trials"]) >= 2 and tune["chosen"]["num_threads"] in (1, 2)
    values = yaml.safe_load(path.read_text())
    assert values["mode"] == "train" and values["num_threads"] == tune["chosen"]["num_threads"]
    loader = build_loader(shards1k, "train", preset=path)
    batch = next(iter(loader))
    assert tuple(batch.images.shape) == (4, 3, 224, 224)
    assert "tuned-eval-224-cpu.yaml" in {p.name for p in out.iterdir()}


def test_cli_prints_the_table_and_withholds_ratios_of_short_windows(shards1k, tmp_path, capsys):
    """The baseline's queue (2 workers x prefetch 2) needs 5 warm-up + 16 timed batches; the split
    holds 11: its rate is reported, marked, and no ratio is printed or judged from it."""
    rc = main(["bench", str(shards1k), "--mode", "eval", "--size", "224", "--device", "cpu", "--batch-size", "4",
               "--threads", "2", "--workers", "2", "--repeats", "1", "--warmup", "1", "--batches", "1", "--stages",
               "read,loader,baseline", "--parity", "off", "--out", str(tmp_path), "--no-plot", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "eval-224" in text and "DALI loader" in text and "machine:" in text
    data = json.loads((tmp_path / "bench.json").read_text())
    run = data["presets"]["eval-224"]
    assert set(run["stages"]) == {"read_files", "read_dali", "loader_dali", "loader_baseline"}
    assert run["stages"]["loader_dali"]["pil_parity"] is False
    window = run["stages"]["loader_baseline"]["window"]
    assert window["queue_batches"] == 4 and window["warmup_batches"] == 5 and not window["steady"]
    assert window["timed_batches"] < STEADY_QUEUES * 4
    assert run["ratios"]["dali_over_baseline"] is None
    assert "loader_baseline" in run["ratios_withheld"]["dali_over_baseline"]
    assert "dali / baseline" in text and "not judged: window too short" in text
    assert not (tmp_path / "bench.png").exists() and "png" not in data["outputs"]


def test_a_failing_stage_is_recorded_and_the_run_goes_on(shards1k, tmp_path):
    """The model stage raises (no such model); the stages after it still run, bench.json says what
    failed, and the command exits non-zero."""
    rc = main(["bench", str(shards1k), "--preset", "train-224", "--device", "cpu", "--batch-size", "4",
               "--repeats", "1", "--warmup", "1", "--batches", "1", "--model-step", "fwd",
               "--model", "no-such-model", "--ttfb-shards", "4", "--ttfb-per-shard", "2", "--ttfb-repeats", "1",
               "--stages", "loader,ttfb", "--out", str(tmp_path), "--no-plot", "--quiet"])
    assert rc == 1
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["partial"] is False
    assert [e["stage"] for e in data["errors"]] == ["train-224/model dali"]
    assert "no-such-model" in data["errors"][0]["error"] and data["errors"][0]["traceback"]
    run = data["presets"]["train-224"]
    assert run["model"] == [{"error": data["errors"][0]["error"]}]
    assert run["stages"]["loader_dali"]["img_s"]["median"] > 0  # measured before the failure
    assert data["first_batch"]["dali_with_idx"]["median"] > 0  # measured after it


def test_json_is_written_after_every_stage(shards1k, tmp_path):
    """Interrupted (Ctrl-C) when the first-batch stage starts: bench.json already holds the presets."""
    def log(message):
        if message.startswith("time to first batch"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench(shards1k, BenchOptions(presets=("train-224", "eval-224"), device="cpu", batch_size=4, repeats=1,
                                         warmup=1, batches=1, stages=("read", "ttfb"), out_dir=tmp_path,
                                         print_table=False), log=log)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["partial"] is True and data["first_batch"] is None
    for run in data["presets"].values():
        assert run["stages"]["read_dali"]["img_s"]["median"] > 0


def test_many_shards_have_valid_indexes(shards1k, tmp_path):
    tars, idxs = make_many_shards(tmp_path, shards1k, "validation", count=5, per_shard=3)
    assert len(tars) == len(idxs) == 5
    for tar in tars:
        from pathlib import Path

        tar = Path(tar)
        assert read_idx(tar.with_name(idx_name(tar.name))) == index_tar(tar)


def test_summary_ratios_and_windows_without_timing():
    s = summary([3.0, 1.0, 2.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0 and s["values"] == [3.0, 1.0, 2.0]
    steady, short = steady_window(4, 3, 20, steps=100), steady_window(4, 1, 3, steps=10)
    assert steady.as_json() == {"warmup_batches": 5, "timed_batches": 20, "queue_batches": 4, "steady": True}
    assert short.as_json() == {"warmup_batches": 5, "timed_batches": 5, "queue_batches": 4, "steady": False}
    assert steady_window(8, 0, 1).timed_batches == 8 * STEADY_QUEUES  # endless sources: raised, always steady
    stages = {"loader_dali": {"img_s": summary([300]), "window": steady.as_json()},
              "loader_baseline": {"img_s": summary([100]), "window": steady.as_json()},
              "decode": {"img_s": summary([400])}}
    r = ratios(stages)
    assert r["dali_over_baseline"] == 3.0 and r["dali_over_decode"] == 0.75 and withheld_ratios(stages) == {}
    stages["loader_baseline"]["window"] = short.as_json()  # the report of issue 13: 0.38x from 3 timed batches
    assert ratios(stages)["dali_over_baseline"] is None and ratios(stages)["dali_over_decode"] == 0.75
    assert "loader_baseline: 5 batches timed" in withheld_ratios(stages)["dali_over_baseline"]
    # the timing helpers count items per window and skip the warm-up
    calls = []
    rates = time_stream(lambda: calls.append(1) or 5, warmup=2, batches=3, repeats=2)
    assert len(rates) == 2 and len(calls) == 2 + 3 * 2
    assert len(time_epochs(lambda: iter([1, 1, 1, 1]), warmup=1, batches=2, repeats=3)) == 3


def test_options_are_checked_before_anything_runs():
    options = BenchOptions(presets="eval-224", stages=["read"], tune=True, model_step="auto").quick()
    assert options.presets == ("eval-224",) and options.wanted == {"read", "tune", "model"}
    assert (options.repeats, options.warmup, options.batches, options.ttfb_shards) == (2, 1, 5, 256)
    for bad, message in (({"stages": ["reed"]}, "unknown stage"), ({"parity": "maybe"}, "parity must be"),
                         ({"model_step": "none"}, "model_step must be"),
                         ({"tune_space": {"size": [224]}}, "cannot tune")):
        with pytest.raises(OptionsError, match=message):
            BenchOptions(**bad)


def test_decoder_backend_verdicts():
    """A GPU run's three decode rows -> backends that ran and fallbacks flagged (pure logic; the
    measuring half runs in the CPU bench above and in tools/gpu_smoke.py on a GPU)."""
    def rows(hw_ms, cuda_ms, cpu_ms, jpeg_pct=None):
        util = {"jpeg_engine_pct": {"mean": jpeg_pct, "max": jpeg_pct}} if jpeg_pct is not None else None
        return {ROWS["hw"]: {"cpu_ms_per_img": hw_ms, "utilisation": util}, ROWS["cuda"]: {"cpu_ms_per_img": cuda_ms},
                ROWS["cpu"]: {"cpu_ms_per_img": cpu_ms}}

    h200 = {"loaded": True, "hardware_decoder": True}
    healthy = judge_backends(rows(0.05, 0.4, 1.2, jpeg_pct=63), h200)
    assert healthy["ran"] == ["hardware", "cuda"] and healthy["fallback"] == []
    no_nvml = judge_backends(rows(0.05, 0.4, 1.2), h200)  # CPU time alone tells the engine worked
    assert no_nvml["ran"] == ["hardware", "cuda"] and no_nvml["fallback"] == []
    no_nvjpeg = judge_backends(rows(1.15, 1.18, 1.2, jpeg_pct=0), {"loaded": False, "library": "not found",
                                                                  "hardware_decoder": False})
    assert no_nvjpeg["ran"] == ["cpu"] and len(no_nvjpeg["fallback"]) == 2
    idle_engine = judge_backends(rows(0.4, 0.4, 1.2, jpeg_pct=0), h200)
    assert idle_engine["ran"] == ["cuda"] and "did not decode" in idle_engine["fallback"][0]
    other_gpu = judge_backends(rows(0.4, 0.4, 1.2), {"loaded": True, "hardware_decoder": False})
    assert other_gpu["ran"] == ["cuda"] and other_gpu["fallback"] == []  # no engine to use: not a fallback


def test_parse_nvidia_smi_dmon():
    text = ("# gpu     sm    mem    enc    dec    jpg    ofa\n# Idx      %      %      %      %      %      %\n"
            "    0     35      6      0      0     48      0\n    0      -      -      -      -      -      -\n")
    assert parse_dmon(text) == [(35.0, 48.0), (None, None)]
    assert parse_dmon("# gpu sm mem enc dec\n# Idx % % % %\n 0 12 1 0 0\n") == [(12.0, None)]  # older drivers


def _without_matplotlib(args: list[str], cwd) -> subprocess.CompletedProcess:
    """``imagenet-pipe ARGS`` in a fresh interpreter where ``import matplotlib`` fails, as in an
    install without the ``plot`` extra (matplotlib itself is installed here: the test extras)."""
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from imagenet_pipe.cli import main\nsys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600, env=env,
                          cwd=cwd)


def test_bench_without_matplotlib_writes_everything_but_the_plot(shards1k, tmp_path):
    import importlib.util

    assert importlib.util.find_spec("matplotlib") is not None  # so that blocking it below means something
    proc = _without_matplotlib(["bench", str(shards1k), "--preset", "train-224", "--device", "cpu", "--batch-size",
                                "4", "--repeats", "1", "--warmup", "1", "--batches", "1", "--stages", "decode,loader",
                                "--out", str(tmp_path / "out"), "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["partial"] is False and data["errors"] == []
    assert data["presets"]["train-224"]["ratios"]["dali_over_decode"] > 0
    assert "matplotlib is not installed" in data["outputs"]["png_skipped"] and "png" not in data["outputs"]
    assert not (tmp_path / "out" / "bench.png").exists() and "no plot: matplotlib" in proc.stdout


@pytest.mark.slow
def test_demo_without_matplotlib(tmp_path):
    proc = _without_matplotlib(["demo", "--out", str(tmp_path / "demo"), "--scale", "0.3", "--device", "cpu",
                                "--workers", "2"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "demo" / "bench" / "bench.json").read_text())
    assert data["partial"] is False and data["errors"] == [] and data["presets"]["train-224"]["stages"]
    assert "done: shards in" in proc.stdout and not (tmp_path / "demo" / "bench" / "bench.png").exists()
