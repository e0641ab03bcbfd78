#!/usr/bin/env python3
"""What an image costs on the boards, from the instructions ptxd's aarch64 build executes:
counted under qemu-user on each of tract's two int8 kernel paths, by class, and turned into a
per-image budget for the Raspberry Pi 4, the Raspberry Pi 5 and the Jetson Orin Nano.

How: benches/instruction_mix.c is built as a QEMU plugin that counts executed instructions by
class (dot products, widening multiply-accumulates, f32 multiply-adds, other SIMD, loads and
stores, the rest). Each shipped model file runs through `ptxd --threads 1 bench` on the same
input as benches/onnxruntime_ratio.py, once with 1 timed run and once with 3; the difference,
halved, is one inference (loading, the warm-up and start-up cancel out). `-cpu cortex-a76`
gives tract the dot-product extension (its SDOT kernel, the Pi 5's and Orin's path);
`-cpu cortex-a72` does not (its SMLAL kernel, the Pi 4's path). With --pipeline, a radiograph
also runs through `bench --pipeline` the same way, and what it costs beyond the models it ran
is the pipeline's own share (decode, preprocess, findings, render, files, journal; the
kernel's side of fsync is not counted).

The budget is a range, per board, from published core figures (docs/performance.md says
which): the low end is the count issued at the rate of the busiest resource (decode width,
SIMD pipes, the one pipe that does widening multiplies, load/store ports), what no schedule
beats; the high end is one instruction a cycle. Until a board is timed, that range is the
evidence.

Usage: python benches/instruction_counts.py --self-check   (the plugin on a known loop; test.sh)
       python benches/instruction_counts.py [--ptxd target/aarch64-unknown-linux-gnu/release/ptxd]
           [--qemu qemu-aarch64] [--variants int8,int8-qdq] [--pipeline PNG] [--json]
       python benches/instruction_counts.py --from counts.jsonl   (an earlier --json run's budget)
Needs gcc, Debian's qemu-user (the dynamic qemu-aarch64: the static one cannot load plugins),
and the CI venv (numpy, pillow, onnxruntime for the shared input code).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnxruntime_ratio import DEFAULT_IMAGE, ROOT, tensor  # noqa: E402

CLASSES = ("dot", "mlal", "fmla", "simd", "ldst", "other")

# Published core figures (Arm's Software Optimization Guides for each core; clocks from the
# boards' makers). simd: 128-bit SIMD pipes; mlal: pipes that execute SMLAL/UMLAL (one on all
# three cores); ldst: loads or stores a cycle; decode: instructions decoded a cycle.
BOARDS = {
    "Raspberry Pi 4 (Cortex-A72, 1.5 GHz)": dict(cpu="cortex-a72", ghz=1.5, decode=3, simd=2, mlal=1, ldst=1),
    "Raspberry Pi 5 (Cortex-A76, 2.4 GHz)": dict(cpu="cortex-a76", ghz=2.4, decode=4, simd=2, mlal=1, ldst=2),
    "Jetson Orin Nano (Cortex-A78AE, 1.5 GHz)": dict(cpu="cortex-a76", ghz=1.5, decode=4, simd=2, mlal=1, ldst=2),
}


def build_plugin(tmp: Path) -> Path:
    so = tmp / "instruction_mix.so"
    src = ROOT / "benches/instruction_mix.c"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(so), str(src)], check=True)
    return so


def count(qemu: str, cpu: str, plugin: Path, argv: list[str], tmp: Path) -> tuple[dict, str]:
    """Instructions by class for one whole run of argv under qemu-user, and its stdout."""
    out = tmp / "counts.txt"
    cmd = [qemu, "-cpu", cpu, "-plugin", f"{plugin},out={out}", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    counts = dict(line.split() for line in out.read_text().splitlines())
    return {k: int(counts[k]) for k in CLASSES}, done.stdout


def per_run(qemu: str, cpu: str, plugin: Path, argv_for_runs, tmp: Path) -> tuple[dict, str]:
    """One run's instructions: (3 runs - 1 run) / 2, so start-up, loading and warm-up cancel."""
    one, _ = count(qemu, cpu, plugin, argv_for_runs(1), tmp)
    three, stdout = count(qemu, cpu, plugin, argv_for_runs(3), tmp)
    return {k: (three[k] - one[k]) // 2 for k in CLASSES}, stdout


# A loop of known instructions, one or two of each class, for --self-check: the plugin must
# count each class exactly (the loop's start and exit add a few "other").
SELF_CHECK_LOOPS = 60_000  # fits one mov
SELF_CHECK_ASM = f"""
.global _start
_start:
    mov x9, #{SELF_CHECK_LOOPS}
1:  sdot v0.4s, v1.16b, v2.4b[1]
    smlal2 v3.4s, v4.8h, v5.h[7]
    fmla v6.4s, v7.4s, v8.s[3]
    add v9.4s, v10.4s, v11.4s
    ldr q12, [sp, #-16]
    str x1, [sp, #-32]
    subs x9, x9, #1
    b.ne 1b
    mov x0, #0
    mov x8, #93
    svc #0
"""
SELF_CHECK_EXPECTED = {"dot": 1, "mlal": 1, "fmla": 1, "simd": 1, "ldst": 2, "other": 2}


def self_check(qemu: str) -> None:
    """The plugin's classes checked on a program whose mix is known: exits non-zero if off."""
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        plugin = build_plugin(tmp)
        (tmp / "loop.s").write_text(SELF_CHECK_ASM)
        subprocess.run(["aarch64-linux-gnu-gcc", "-march=armv8.2-a+dotprod", "-nostdlib", "-static",
                        "-o", str(tmp / "loop"), str(tmp / "loop.s")], check=True)
        got, _ = count(qemu, "cortex-a76", plugin, [str(tmp / "loop")], tmp)
        want = {k: n * SELF_CHECK_LOOPS for k, n in SELF_CHECK_EXPECTED.items()}
        ok = all(got[k] == want[k] for k in CLASSES if k != "other") and 0 <= got["other"] - want["other"] <= 8
        print(f"instruction_mix self-check: counted {got}, expected {want} (other: up to 8 more)")
        if not ok:
            sys.exit("instruction_mix self-check failed: the plugin miscounts a class")


def cycles(c: dict, board: dict) -> tuple[float, float]:
    """(fewest, one a cycle): the busiest resource's issue cycles, and the instruction count."""
    total = sum(c[k] for k in CLASSES)
    vector = c["dot"] + c["mlal"] + c["fmla"] + c["simd"]
    low = max(total / board["decode"], vector / board["simd"], c["mlal"] / board["mlal"], c["ldst"] / board["ldst"])
    return low, float(total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ptxd", type=Path, default=ROOT / "target/aarch64-unknown-linux-gnu/release/ptxd")
    ap.add_argument("--qemu", default="qemu-aarch64")
    ap.add_argument("--variants", default=None, help="comma-separated; default: every shipped variant")
    ap.add_argument("--manifest", type=Path, default=ROOT / "models/manifest.toml")
    ap.add_argument("--pipeline", type=Path, default=None, help="also count this radiograph's whole pipeline")
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    ap.add_argument("--json", action="store_true", help="one JSON object per row")
    ap.add_argument("--self-check", action="store_true", help="only check the plugin on a known loop")
    ap.add_argument("--from", dest="saved", type=Path, default=None,
                    help="print the rows and budget of an earlier --json run instead of counting")
    args = ap.parse_args()
    if args.self_check:
        self_check(args.qemu)
        return
    if args.saved:
        rows = [json.loads(line) for line in args.saved.read_text().splitlines() if line.strip()]
        for r in rows:
            report(r, False)
        budget(rows)
        return
    manifest = tomllib.loads(args.manifest.read_text())
    wanted = set(args.variants.split(",")) if args.variants else None
    cpus = sorted({b["cpu"] for b in BOARDS.values()})
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        plugin = build_plugin(tmp)
        for role in ("lungs", "classifier", "segmenter"):
            pre = manifest[role]["preprocess"]
            inp = tmp / f"{role}.f32"
            tensor(args.image, pre).tofile(inp)
            for variant, spec in manifest[role]["variants"].items():
                if wanted is not None and variant not in wanted:
                    continue
                model = args.manifest.parent / spec["file"]
                # a file an earlier role of this variant names runs once for both (analysis/mod.rs)
                earlier = [r for r in rows if r["variant"] == variant and r["file"] == spec["file"]]
                if earlier:
                    for cpu in cpus:
                        rows.append({"kind": "model", "role": role, "variant": variant, "file": spec["file"], "cpu": cpu,
                                     "runs_with": earlier[0]["role"], **{k: 0 for k in CLASSES}})
                        report(rows[-1], args.json)
                    continue
                for cpu in cpus:
                    def argv(runs, model=model, size=pre["width"], inp=inp):
                        return [str(args.ptxd), "--threads", "1", "bench", "--runs", str(runs),
                                "--size", str(size), "--input", str(inp), str(model)]
                    c, _ = per_run(args.qemu, cpu, plugin, argv, tmp)
                    rows.append({"kind": "model", "role": role, "variant": variant, "file": spec["file"], "cpu": cpu, **c})
                    report(rows[-1], args.json)
        if args.pipeline:
            for variant in sorted({r["variant"] for r in rows}):
                for cpu in cpus:
                    def argv(runs, variant=variant):
                        return [str(args.ptxd), "--manifest", str(args.manifest), "--threads", "1", "bench",
                                "--pipeline", "--json", "--variant", variant, "--runs", str(runs),
                                "--scratch", str(tmp), str(args.pipeline)]
                    c, stdout = per_run(args.qemu, cpu, plugin, argv, tmp)
                    verdict = json.loads(stdout.strip().splitlines()[0])["verdict"]
                    # the lung-field model always runs; the classifier unless it is not a chest
                    # radiograph; the segmenter when positive (analysis.rs)
                    ran = ["lungs"] + ([] if verdict == "not_chest_radiograph" else ["classifier"])
                    ran += ["segmenter"] if verdict == "positive" else []
                    models = sum(r[k] for r in rows if r["kind"] == "model" and r["variant"] == variant
                                 and r["cpu"] == cpu and r["role"] in ran for k in CLASSES)
                    rows.append({"kind": "pipeline", "variant": variant, "cpu": cpu, "verdict": verdict,
                                 "models": models, **c})
                    report(rows[-1], args.json)
    if not args.json:
        budget(rows)


def report(r: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(r), flush=True)
        return
    name = r["file"] if r["kind"] == "model" else f"pipeline ({r['variant']}, {r['verdict']})"
    if r.get("runs_with"):
        print(f"{name:<34} {r['cpu']:<11} the {r['role']}: in the {r['runs_with']}'s run, 0 more", flush=True)
        return
    total = sum(r[k] for k in CLASSES)
    mix = "  ".join(f"{k} {100 * r[k] / total:4.1f}%" for k in CLASSES)
    print(f"{name:<34} {r['cpu']:<11} {total / 1e9:6.3f} G instructions  {mix}", flush=True)
    if r["kind"] == "pipeline":
        outside = total - r["models"]
        print(f"{'':<34} {'':<11} outside the models: {outside / 1e6:.1f} M, "
              f"{100 * outside / r['models']:.1f}% of the models' own", flush=True)


def budget(rows: list[dict]) -> None:
    """Per board and variant: one negative image (lungs + classifier) and one positive (+ segmenter)."""
    print("\ninstructions a positive radiograph's models execute (a file two roles share counted once):")
    for cpu in sorted({r["cpu"] for r in rows}):
        for variant in sorted({r["variant"] for r in rows}):
            sel = [r for r in rows if r["kind"] == "model" and r["variant"] == variant and r["cpu"] == cpu]
            if sel:
                print(f"  {cpu:<11} {variant:<9} {sum(r[k] for r in sel for k in CLASSES) / 1e9:6.3f} G")
    print("\nper-image budget from the counts (fewest cycles at the busiest resource .. one instruction a cycle):")
    for name, board in BOARDS.items():
        for variant in sorted({r["variant"] for r in rows}):
            sel = {r["role"]: r for r in rows if r["kind"] == "model" and r["variant"] == variant and r["cpu"] == board["cpu"]}
            if set(sel) != {"lungs", "classifier", "segmenter"}:
                continue
            parts = []
            for label, roles in (("negative", ("lungs", "classifier")), ("positive", ("lungs", "classifier", "segmenter"))):
                low, high = (sum(ends) / board["ghz"] / 1e6 for ends in zip(*(cycles(sel[role], board) for role in roles)))
                parts.append(f"{label} {low:5.0f}..{high:5.0f} ms")
            print(f"  {name:<42} {variant:<9} {'  '.join(parts)}")


if __name__ == "__main__":
    main()
