"""One table from bench_step.py's JSON records (one per line on stdin or in files): step time,
examples/s, achieved TFLOP/s and its share of the device's bf16 dense peak.

  python benchmarks/device_table.py records.jsonl

Run by benchmarks/device_check.sh. The peak is looked up from the device kind JAX reports
(``PEAK_BF16_TFLOPS``, vendors' dense figures, no sparsity); an unknown device gets no share.
"""

from __future__ import annotations

import json
import sys

# Dense bf16 tensor throughput, TFLOP/s (NVIDIA's data sheets: SXM parts; H200 = H100's).
PEAK_BF16_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "L4": 121.0,
    "A10G": 125.0,
}


def peak_tflops(device_kind: str) -> float | None:
    kind = device_kind.upper()
    for name, peak in PEAK_BF16_TFLOPS.items():
        if name in kind:
            return peak
    return None


def table(records: list[dict]) -> str:
    """Markdown: one row per record, in the order given."""
    header = (
        "| config | batch | precision | steps/call | step ms | examples/s | TFLOP/s | % bf16 peak |"
    )
    lines = [header, "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in records:
        flops, ms = r.get("flops_per_step"), r["step_ms_median"]
        tflops = flops / (ms / 1e3) / 1e12 if flops else None
        peak = peak_tflops(r.get("device_kind", ""))
        share = (
            f"{100 * tflops / (peak * r.get('device_count', 1)):.1f}" if tflops and peak else "–"
        )
        precision = r.get("overrides", {}).get("model.compute_dtype", "float32")
        lines.append(
            f"| {r['config']} | {r['batch']} | {precision} | {r['steps_per_call']} | {ms:.2f} "
            f"| {r['examples_per_s']:.0f} | {f'{tflops:.2f}' if tflops else '–'} | {share} |"
        )
    first = records[0] if records else {}
    lines.append(
        f"\n{first.get('device_kind', '?')} × {first.get('device_count', '?')}, "
        f"JAX {first.get('jax_version', '?')}; FLOPs from XLA's cost analysis of the step."
    )
    return "\n".join(lines)


def read(paths: list[str]) -> list[dict]:
    streams = [open(p) for p in paths] if paths else [sys.stdin]
    records = []
    for stream in streams:
        for line in stream:
            line = line.strip()
            if line.startswith("{"):
                records.append(json.loads(line))
    return records


if __name__ == "__main__":
    records = read(sys.argv[1:])
    if not records:
        sys.exit("no bench_step.py records (JSON lines) in the input")
    print(table(records))
