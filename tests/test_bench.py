"""Smoke tests of ``imagenet-pipe bench`` on a tiny shard set: every stage runs, the JSON holds the
machine record and every result, the plot is a PNG, and a tuned preset loads. No wall times are
asserted: timing on a shared CI machine is noise."""

from __future__ import annotations

import json

import pytest
import yaml

from imagenet_pipe.bench import run_bench
from imagenet_pipe.bench.data import make_many_shards
from imagenet_pipe.bench.report import goals, ratios
from imagenet_pipe.bench.timing import summary, time_epochs, time_stream
from imagenet_pipe.cli import main
from imagenet_pipe.loaders import build_loader
from imagenet_pipe.shards import idx_name, index_tar, read_idx

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STAGE_KEYS = {"img_s", "backend"}
SUMMARY_KEYS = {"median", "min", "max", "q1", "q3", "values", "unit"}


@pytest.fixture(scope="module")
def bench_result(shards1k, tmp_path_factory):
    """One run of every stage, both presets kinds, a model step and a narrowed auto-tune."""
    out = tmp_path_factory.mktemp("bench-out")
    result = run_bench(shards1k, presets=["train-224", "eval-224"], split="train", device="cpu", batch_size=4,
                       repeats=2, warmup=1, batches=2, stages_wanted=["read", "decode", "resize", "loader", "baseline",
                                                                      "ttfb", "ops"],
                       model_step="fwd", model_backends=["dali", "baseline"], ttfb_shards=12, ttfb_per_shard=2,
                       ttfb_repeats=1, tune=True, tune_space={"num_threads": [1, 2], "prefetch": [1],
                                                              "batch_size": [4]},
                       out_dir=out, log=lambda _m: None, command="test", print_table=False)
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
        r = run["ratios"]
        assert r["dali_over_baseline"] > 0 and r["dali_over_decode"] > 0
        ops = run["ops"]["rows"]  # CPU cost of each operator choice
        assert "decode whole" in ops and all(v["cpu_ms_per_img"] > 0 for v in ops.values())
        assert ("+ ROI resize, parity on" in ops) == name.startswith("eval")
        models = run["model"]
        assert [m["backend"] for m in models] == ["dali", "baseline"]
        for m in models:
            assert m["step"] == "fwd" and m["model_alone_img_s"]["median"] > 0 and m["fed_img_s"]["median"] > 0
            assert isinstance(m["keeps_up"], bool)


def test_json_holds_the_machine_record_and_every_result(bench_result):
    result, out = bench_result
    data = json.loads((out / "bench.json").read_text())
    assert data["schema"] == "imagenet-pipe-bench/1" and data["command"] == "test"
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
    assert data["goals"] == []  # a tiny set: no verdicts


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


def test_cli_prints_the_table_and_writes_json(shards1k, tmp_path, capsys):
    rc = main(["bench", str(shards1k), "--mode", "eval", "--size", "224", "--device", "cpu", "--batch-size", "4",
               "--repeats", "1", "--warmup", "1", "--batches", "1", "--stages", "read,loader", "--parity", "off",
               "--out", str(tmp_path), "--no-plot", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "eval-224" in text and "DALI loader" in text and "machine:" in text
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data["presets"]["eval-224"]["stages"]) == {"read_files", "read_dali", "loader_dali"}
    assert data["presets"]["eval-224"]["stages"]["loader_dali"]["pil_parity"] is False
    assert not (tmp_path / "bench.png").exists()


def test_many_shards_have_valid_indexes(shards1k, tmp_path):
    tars, idxs = make_many_shards(tmp_path, shards1k, "validation", count=5, per_shard=3)
    assert len(tars) == len(idxs) == 5
    for tar in tars:
        from pathlib import Path

        tar = Path(tar)
        assert read_idx(tar.with_name(idx_name(tar.name))) == index_tar(tar)


def test_summary_ratios_and_goals_without_timing():
    s = summary([3.0, 1.0, 2.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0 and s["values"] == [3.0, 1.0, 2.0]
    stages = {"loader_dali": {"img_s": summary([300])}, "loader_baseline": {"img_s": summary([100])},
              "decode": {"img_s": summary([400])}}
    r = ratios(stages)
    assert r["dali_over_baseline"] == 3.0 and r["dali_over_decode"] == 0.75
    result = {"settings": {"device": "cpu", "samples": 5000}, "presets": {"train-224": {"stages": stages,
                                                                                         "ratios": r}},
              "first_batch": None}
    met = {g["goal"]: g["met"] for g in goals(result)}
    assert met == {"train-224 dali/baseline >= 2.0x": True, "train-224 dali/decode >= 0.8x": False}
    # the timing helpers count items per window and skip the warm-up
    calls = []
    rates = time_stream(lambda: calls.append(1) or 5, warmup=2, batches=3, repeats=2)
    assert len(rates) == 2 and len(calls) == 2 + 3 * 2
    assert len(time_epochs(lambda: iter([1, 1, 1, 1]), warmup=1, batches=2, repeats=3)) == 3
