"""fp32 vs int8 (onnxruntime static quantization) VGG-16: bytes, latency at batch 1 and 32, accuracy.

Usage: .venv/bin/python benchmarks/bench_quant.py [--profile cpu] [--calib-images 64] [--repeats 5]

Runs the quantization chapter's model (VGG-16 trunk + linear head trained on MTCE 8-px images of
the default data, cpu profile) and its int8 versions in the same run, and checks the targets:
int8 bytes <= 0.27 x fp32, accuracy within 1 point of fp32, int8 latency <= 0.6 x fp32 (batch 32).
"""

from __future__ import annotations

import argparse
import os

from cbirlib.studies import quantstudy as qs, retrievalstudy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--calib-images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cfg = retrievalstudy.config_for(args.profile, "vgg16", weights="bundled")
    run = qs.base_run(cfg, 8)
    table = qs.onnx_int8(run, args.calib_images, args.repeats)
    o = table.pivot(index="model", columns="metric", values="value")
    print(f"{os.cpu_count()} cores; VGG-16 at {cfg.image_size} px, {len(run.y_true)} test images (MTCE 8-px)")
    print(o.to_string())
    fp32 = o.loc["fp32"]
    for name, r in o.drop(index="fp32").iterrows():
        ratios = (r["bytes"] / fp32["bytes"], r["latency_ms_batch1"] / fp32["latency_ms_batch1"],
                  r["latency_ms_batch32"] / fp32["latency_ms_batch32"], 100 * (r["accuracy"] - fp32["accuracy"]))
        ok = ratios[0] <= 0.27 and ratios[2] <= 0.6 and abs(ratios[3]) <= 1.0
        print(f"{name}: bytes {ratios[0]:.3f} x, latency b1 {ratios[1]:.2f} x, b32 {ratios[2]:.2f} x, "
              f"accuracy {ratios[3]:+.1f} points -> targets {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
