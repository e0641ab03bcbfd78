"""Writes what `release` measured into models/: manifest.toml (the default pipeline),
densenet121.toml (the design's DenseNet121 classifier with the same lung-field model and
segmenter) and the generated metrics section of models/README.md.

    python -m ptx_training.card      # rewrite both from models/metrics.json, no export

Every number comes from metrics.json; nothing here is typed by hand.
"""

import hashlib
import json
from pathlib import Path

from . import INPUT_SIZE, LUNG_SIZE, MEAN, STD

MODELS = Path(__file__).resolve().parents[2]
FORMATS = {
    "int8": ("ONNX opset 17, int8 QOperator: Conv as QLinearConv (u8 activations, s8 per-channel weights), depthwise Conv and other ops f32",
             "real integer convolution kernels in tract (NEON on aarch64); the default"),
    "int8-qdq": ("ONNX opset 17, int8 QDQ around every Conv (u8 activations, s8 per-channel weights)",
                 "tract computes it in f32 between quantize/dequantize pairs; unlike the int8 file it quantizes the depthwise convolutions too, so where a network has them it is another model at the thresholds (python -m ptx_training.variants)"),
}
# The largest difference allowed between tract's and onnxruntime's outputs on a file
# (classifier: the score; masks: 16x16 block means), about 1.5x the worst measured on the
# reference inputs (lossy JPEG/DICOM ones: their decoders differ by a grey level here and
# there, which the per-channel int8 EfficientNets amplify: 0.057, 0.063 and 0.153 measured);
# the tests hold lossless PNG inputs to half of it.
TOLERANCE = {"lungs": 0.2, "classifier": 0.1, "segmenter": 0.1}
# The chest-or-not head learned from cxr-512/; the DICOM files are 24 of the same radiographs.
SEEN_BY_CHEST_HEAD = ("cxr-512", "dicom")
TRAIN_CMD = {"classifier": "make cv segmenter", "lite0": "make lite0", "densenet121": "make densenet121",
             "segmenter": "make cv segmenter", "lungs": "make lungs"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ci(d: dict) -> str:
    return f"{d['value']:.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"


def toml_ci(d: dict) -> str:
    return f"{{ value = {d['value']:.4f}, ci95 = [{d['ci95'][0]:.4f}, {d['ci95'][1]:.4f}] }}"


def ranking(v: dict) -> str:
    """The counts and the three AUCs of a classifier report, as TOML lines."""
    return "\n".join([f"n = {v['n']}", f"positives = {v['positives']}"]
                     + [f"{k} = {toml_ci(v[k])}" for k in ("auc_pooled", "auc_nih", "auc_siim_vs_siim_domain")])


def variants(role: str, stem: str, models_dir: str = "") -> str:
    out = []
    for v, (fmt, note) in FORMATS.items():
        f = MODELS / f"{stem}.{v}.onnx"
        out.append(f'[{role}.variants.{v}]\nfile = "{models_dir}{f.name}"\nsha256 = "{sha256(f)}"\nformat = "{fmt}"\nnote = "{note}"\ntolerance = {TOLERANCE[role]}\n')
    return "\n".join(out)


# Each role's further outputs in its file, read by name: the lung file's chest-or-not score
# (nets.LungsAndChest), and in the shared segmenter file (export.expose_mask) the output the
# other role reads, so that ptxd runs that file once per image for both.
CHEST = ("chest", [1, 1], "probability that the image looks like a frontal chest radiograph at all (0..1; the chest-or-not head, ptx_training.chest)")
MASK = ("mask", [1, 1, INPUT_SIZE, INPUT_SIZE], "the segmenter's mask, from the same run (the segmenter role reads it)")
SCORE = ("probability", [1, 1], "the classifier's score, from the same run (the classifier role reads it)")
EXTRA_OUTPUTS = {"lungs": [CHEST], "classifier": [MASK], "segmenter": [SCORE]}


def extra_outputs(role: str, stem: str) -> str:
    extras = EXTRA_OUTPUTS[role] if role == "lungs" or stem == "segmenter" else []
    return "".join(f'''
[[{role}.extra_outputs]]
name = "{name}"
shape = {shape}
meaning = "{meaning}"
''' for name, shape, meaning in extras)


def io(role: str, stem: str, size: int, output: str, shape: list, meaning: str) -> str:
    return f'''[{role}.input]
name = "image"
shape = [1, 3, {size}, {size}]
layout = "NCHW"

[{role}.output]
name = "{output}"
shape = {shape}
meaning = "{meaning}"
{extra_outputs(role, stem)}
[{role}.preprocess]
resize = "pil-bilinear"
width = {size}
height = {size}
scale = 255.0
mean = {MEAN}
std = {STD}
channels = 3
description = "decode to 8-bit grey (MONOCHROME1 inverted, VOI window applied); resize the whole image to {size}x{size} with Pillow's BILINEAR (antialiased triangle filter, aspect ratio not kept); x/255; (x - {MEAN}) / {STD}; the grey plane repeated into 3 channels, NCHW"
'''


def head(role: str, version: str, architecture: str, stem: str, size: int, output: str, shape: list, meaning: str) -> str:
    """A role's identity, files and contract: the part every section shares."""
    return f'''[{role}]
version = "{version}"
architecture = "{architecture}"
default_variant = "int8"

{variants(role, stem)}
{io(role, stem, size, output, shape, meaning)}
'''


def lungs_section(m: dict) -> str:
    lg = m["lungs"]
    t = lg["thresholds"]
    g = lg["gate"]
    real_n = sum(r["n"] for r in g["real"].values())
    real_refused = sum(r["refused"] for r in g["real"].values())
    caught = sum(c["caught"] for c in g["non_chest"].values())
    n_non = sum(c["n"] for c in g["non_chest"].values())
    min_frac = min(r["fraction_range"][0] for r in g["real"].values())
    held_out = {k: r for k, r in g["real"].items() if k not in SEEN_BY_CHEST_HEAD}
    lowest_held_out = min(r["chest_min"] for r in held_out.values())
    return head("lungs", f"ptx-lungs-unetpp-effnetlite0-int8-{m['released']}",
                "UNet++ (decoder 8/16/24/32/48) on EfficientNet-Lite0 (ImageNet-initialised), 128 px, 1-channel sigmoid",
                "lungs", LUNG_SIZE, "lungs", [1, 1, LUNG_SIZE, LUNG_SIZE],
                f"per-cell probability of lung field on the {LUNG_SIZE}x{LUNG_SIZE} grid") + f'''[lungs.thresholds]
# pixel: a cell is lung at or above it. The not-a-chest-radiograph limits (python -m
# ptx_training.gate) sit at {g["margin"]} of the most extreme value over every real radiograph
# in ../shared/data ({real_n} images; refused with these limits: {real_refused}); they caught
# {caught} of {n_non} images that are not chest radiographs. min_chest is {g["margin"]} of the
# lowest chest-or-not score on cxr-512/ (the only source its head learned from); the lowest
# score on the {sum(r["n"] for r in held_out.values())} radiographs of the sources it never saw is {lowest_held_out}.
# The smallest lung share the model found on a real radiograph is {min_frac} (over- or
# under-exposed, whited-out films), so the lung limits cannot catch much without refusing real
# films; the contrast and chest-or-not limits do the work.
# margin_cells: findings may reach this far beyond the lung field (pneumothorax lies at the
# periphery, where lung masks are tight).
pixel = {t["pixel"]}
min_fraction = {t["min_fraction"]}
max_fraction = {t["max_fraction"]}
min_side_share = {t["min_side_share"]}
min_contrast = {t["min_contrast"]}
min_chest = {t["min_chest"]}
margin_cells = {t["margin_cells"]}

[lungs.metrics]
val_dice = {lg["val_dice"]:.4f}
val_images = {len(lg["val_names"])}
real_radiographs_refused = {real_refused}
real_radiographs_checked = {real_n}
non_chest_caught = {caught}
non_chest_checked = {n_non}

[lungs.training]
command = "cd models/training && {TRAIN_CMD["lungs"]}"
data = "lungs/: 76 real radiographs with lung-field masks (Montgomery County, Shenzhen); about 80% train, 20% val by name hash"
chest_command = "cd models/training && make chest"
chest_data = "chest-or-not head (logistic regression, C {lg["chest_head"]["C"]}): {lg["chest_head"]["n_chest"]} cxr-512/ radiographs and varied copies (chest) against {lg["chest_head"]["n_other"]} drawn non-radiographs and LFW face photographs (not chest), on the int8 encoder's pooled features"
'''


def classifier_section(m: dict, name: str, stem: str, version: str, architecture: str) -> str:
    c = m[name]
    v = c["real_val"]
    low = c["real_val_at_indeterminate_low"]
    return head("classifier", f"{version}-{m['released']}", architecture, stem, INPUT_SIZE, "probability", [1, 1],
                "probability that the radiograph shows a pneumothorax (0..1)") + f'''[classifier.thresholds]
# Chosen on the real validation split ({v["n"]} real radiographs, {v["positives"]} with pneumothorax;
# patient-level, see models/README.md): `probability` is the highest threshold with sensitivity
# >= 0.90 there (sensitivity {ci(v["sensitivity"])}, specificity {ci(v["specificity"])}).
# [indeterminate_low, probability) is "indeterminate: have it read": indeterminate_low is the
# threshold with sensitivity >= 0.97 on real val (sensitivity {ci(low["sensitivity"])},
# specificity {ci(low["specificity"])}): the band holds the positives that the operating point
# misses, at the cost of the specificity difference.
probability = {c["thresholds"]["probability"]}
indeterminate_low = {c["thresholds"]["indeterminate_low"]}

[classifier.metrics.real_val]
# 95% bootstrap intervals. auc_nih: within NIH images only (the source shortcut cannot explain
# it); auc_siim_vs_siim_domain: SIIM positives against unlabelled SIIM-processed images, about
# one in five of which is itself positive (a pessimistic stand-in).
{ranking(v)}
sensitivity = {toml_ci(v["sensitivity"])}
specificity = {toml_ci(v["specificity"])}

[classifier.metrics.real_dev]
# 10 real labelled radiographs (3 positive), never used for any choice
auc = {c["real_dev"]["auc"]}
sensitivity = {c["real_dev"]["sensitivity"]}
specificity = {c["real_dev"]["specificity"]}

[classifier.metrics.synthetic_test]
# synthetic lesions drawn into real radiographs: a measure of the synthesiser, not of real skill
auc = {c["synthetic_test"]["auc"]}

[classifier.training]
command = "cd models/training && {TRAIN_CMD[name]}"
data = "{'the segmenter, trained as below' if name == 'classifier' else "real-labelled/ train folds (patient-level; 60% of 627 real radiographs), SIIM-processed presumed negatives from cxr-512/, synthetic lesions on both sources' clear images"}"
'''


def default_classifier_section(m: dict, version: str, architecture: str) -> str:
    """The default classifier: thresholds and metrics from cross-validation (ptx_training.cv)."""
    c = m["classifier"]
    o = c["out_of_fold"]
    nb = o["nested"]["bands"]
    p = nb["pooled"]
    # the segmenter's file: the score is its second output (export.expose_mask)
    return head("classifier", f"{version}-{m['released']}", architecture, "segmenter", INPUT_SIZE, "probability", [1, 1],
                "probability that the radiograph shows a pneumothorax (0..1)") + f'''[classifier.thresholds]
# The alarm budget, chosen by cross-validation over real-labelled/'s 5 patient folds (models/README.md):
# `indeterminate_low` flags (amber or red) at most {o["budget"]["flag"]:.0%} of clear films, `probability` raises the red
# alarm on at most {o["budget"]["alarm"]:.0%}: quantiles of the out-of-fold scores of its {p["n"] - p["positives"]} clear films.
# Nested estimate (each fold judged by thresholds chosen on the other four): clear films flagged
# {ci(p["clear_flagged"])}, red {ci(p["clear_red"])}; pneumothoraces flagged {ci(p["sensitivity_flagged"])},
# red {ci(p["sensitivity_red"])}. Below `indeterminate_low` the verdict is `negative`: no
# pneumothorax flagged, which is not a clear film.
probability = {c["thresholds"]["probability"]}
indeterminate_low = {c["thresholds"]["indeterminate_low"]}

[classifier.metrics.out_of_fold]
# Images neither the model nor any choice saw: each radiograph scored by the one of five
# models that never trained on its patient (fixed recipe, last epoch kept), through the int8
# file. 95% bootstrap intervals. auc_nih: within NIH images only (the source shortcut cannot
# explain it); auc_siim_vs_siim_domain: SIIM positives against held-out unlabelled
# SIIM-processed images, about one in five of which is itself positive (pessimistic).
{ranking(o)}
clear_flagged = {toml_ci(p["clear_flagged"])}
clear_red = {toml_ci(p["clear_red"])}
sensitivity_flagged = {toml_ci(p["sensitivity_flagged"])}
sensitivity_red = {toml_ci(p["sensitivity_red"])}
sensitivity_flagged_nih = {toml_ci(nb["nih"]["sensitivity_flagged"])}
clear_flagged_nih = {toml_ci(nb["nih"]["clear_flagged"])}

[classifier.metrics.real_dev]
# 10 real labelled radiographs (3 positive), never used for any choice: the release file itself
n = {c["real_dev"]["n"]}
positives = {c["real_dev"]["positives"]}
auc = {c["real_dev"]["auc"]}

[classifier.metrics.synthetic_test]
# synthetic lesions drawn into real radiographs: a measure of the synthesiser, not of real skill
auc = {c["synthetic_test"]["auc"]}

[classifier.training]
command = "cd models/training && {TRAIN_CMD["classifier"]}"
data = "the segmenter, trained as below"
'''


def segmenter_section(m: dict) -> str:
    s = m["segmenter"]
    v = s["out_of_fold_masked_positives"]
    return head("segmenter", f"ptx-seg-unetpp-effnetlite0-int8-{m['released']}",
                "UNet++ (nested dense skips, decoder 16/24/32/48/64) on EfficientNet-Lite0 (ImageNet-initialised, no SE, ReLU6), 1-channel sigmoid",
                "segmenter", INPUT_SIZE, "mask", [1, 1, INPUT_SIZE, INPUT_SIZE],
                f"per-pixel probability of pneumothorax on the {INPUT_SIZE}x{INPUT_SIZE} grid (resize back to the input image)") + f'''[segmenter.thresholds]
# Chosen by mean Dice on the out-of-fold masks of real-labelled/'s {v["n"]} masked positives (SIIM
# radiologist masks), masks clipped to the lung fields as ptxd does. Nested estimate (each
# fold judged by the choice made on the other four): Dice {ci(v["dice_nested"])}.
pixel = {s["thresholds"]["pixel"]}
min_area_pixels = {s["thresholds"]["min_area_pixels"]}

[segmenter.metrics.out_of_fold]
n = {v["n"]}
dice = {toml_ci(v["dice_nested"])}

[segmenter.training]
command = "cd models/training && {TRAIN_CMD["segmenter"]}"
data = "every real-labelled/ radiograph (SIIM radiologist masks repeated 6x), synthetic lesions on cxr-512/ radiographs, clear real images; 128 px crops at full 256 px scale for 6 epochs; then whole 256 px images for 2 epochs with an image-level loss on its score (NIH positives by label), the top-scoring 10% of cxr-512/ presumed negatives dropped as likely positives"
'''


HEADER = """# Generated by models/training (python -m ptx_training.release / .card); do not edit by hand.
# Every number comes from models/metrics.json, measured by that same run on real images.
# The classifier and the segmenter name one file: ptxd runs it once per image.
schema = 4
"""


def write_manifests(m: dict) -> None:
    default = default_classifier_section(m, "ptx-cls-segscore-unetpp-effnetlite0-int8",
                                         "the segmenter's network (UNet++ on ImageNet EfficientNet-Lite0) scoring the image: the largest 8x8-block mean of its mask probabilities (0..1, not a calibrated probability)")
    dn = classifier_section(m, "densenet121", "classifier-densenet121", "ptx-cls-densenet121-int8",
                            "DenseNet121 (torchvision, random init), 1 logit + sigmoid")
    (MODELS / "manifest.toml").write_text(HEADER + "\n" + lungs_section(m) + "\n" + default + "\n" + segmenter_section(m))
    (MODELS / "densenet121.toml").write_text(
        HEADER.replace("# The classifier and the segmenter name one file: ptxd runs it once per image.\nschema = 4",
                       "# The design's DenseNet121 classifier in place of the default one; the lung-field model and\n"
                       "# the segmenter are the default pipeline's. Use it with `ptxd --manifest models/densenet121.toml`.\nschema = 4")
        + "\n" + lungs_section(m) + "\n" + dn + "\n" + segmenter_section(m))


def write_card_metrics(m: dict) -> None:
    """Replace the generated metrics section of models/README.md (between its markers)."""
    card = MODELS / "README.md"
    begin, end = "<!-- metrics:begin (generated by ptx_training.card) -->", "<!-- metrics:end -->"
    c = m["classifier"]
    o = c["out_of_fold"]
    nb = o["nested"]["bands"]
    lines = [begin, "", "### The default classifier, cross-validated", "",
             f"Out of fold: each of real-labelled/'s {o['n']} radiographs ({o['positives']} with pneumothorax) scored through the int8 file by "
             "the one of five models that never trained on its patient; 95% bootstrap intervals.", "",
             "| AUC pooled | AUC within NIH (n, pos) | AUC SIIM vs SIIM-domain (held-out negatives) | AUC per fold |", "|---|---|---|---|",
             f"| {ci(o['auc_pooled'])} | {ci(o['auc_nih'])} ({o['nih_n']}, {o['nih_positives']}) | {ci(o['auc_siim_vs_siim_domain'])} ({o['siim_domain_n']}) | "
             f"{', '.join(f'{x:.2f}' for x in o['auc_per_fold'])} |", "",
             f"At the alarm budget (amber or red on at most {o['budget']['flag']:.0%} of clear films, red on at most {o['budget']['alarm']:.0%}), "
             "nested: each fold judged by thresholds chosen on the other four.", "",
             "| images | n (pos) | clear films flagged | clear films red | pneumothoraces flagged | pneumothoraces red |", "|---|---|---|---|---|---|"]
    for name, label in (("pooled", "all"), ("nih", "NIH"), ("siim", "SIIM")):
        r = nb[name]
        clear = "-" if r["n"] == r["positives"] else ci(r["clear_flagged"])
        red = "-" if r["n"] == r["positives"] else ci(r["clear_red"])
        lines.append(f"| {label} | {r['n']} ({r['positives']}) | {clear} | {red} | {ci(r['sensitivity_flagged'])} | {ci(r['sensitivity_red'])} |")
    sd = o["siim_domain_at_release_thresholds"]
    d = c["real_dev"]
    dev_bands = ", ".join(f"{d['bands'][n]}{' (pneumothorax)' if d['labels'][n] else ''}" for n in sorted(d["bands"]))
    lines += ["", f"Release thresholds (from all five folds' clear films): probability {c['thresholds']['probability']}, indeterminate band from "
              f"{c['thresholds']['indeterminate_low']}. Held-out SIIM-processed unlabelled images at them: {sd['flagged']:.2f} flagged, {sd['red']:.2f} red "
              "(about one in five of them is expected to be a real pneumothorax).", "",
              f"The release file (the fold-0 model) on real-dev (10 real images, 3 positive, never used for a choice): "
              f"AUC {d['auc']:.3f}; verdicts {dev_bands}. Against its fp32 twin on {c['quantization']['images']} unlabelled radiographs: Spearman "
              f"{c['quantization']['spearman']:.3f}, largest difference {c['quantization']['max_abs_diff']:.3f}. Synthetic test AUC {c['synthetic_test']['auc']:.3f} "
              "(a measure of the synthesiser).", "",
              "### Other classifiers, on the fixed real validation split (older protocol)", "",
              "Trained on folds 2-4, epoch and threshold (sensitivity >= 0.90) chosen on real val (folds 0-1) and reported there: optimistic.", "",
              "| classifier | n (pos) | AUC pooled | AUC within NIH (n, pos) | AUC SIIM vs SIIM-domain | threshold | sensitivity | specificity |", "|---|---|---|---|---|---|---|---|"]
    for name, label in (("lite0", "EfficientNet-Lite0 classifier, ImageNet init (measured, not shipped)"), ("densenet121", "DenseNet121 classifier, random init (variant)")):
        v = m[name]["real_val"]
        lines.append(f"| {label} | {v['n']} ({v['positives']}) | {ci(v['auc_pooled'])} | {ci(v['auc_nih'])} ({v['nih_n']}, {v['nih_positives']}) | "
                     f"{ci(v['auc_siim_vs_siim_domain'])} | {v['threshold']:.3f} | {ci(v['sensitivity'])} | {ci(v['specificity'])} |")
    s2 = m["segmenter"]
    v = s2["out_of_fold_masked_positives"]
    lines += ["", "### Segmenter", "",
              f"Out of fold on real-labelled/'s {v['n']} masked positives (SIIM radiologist masks), masks clipped to the lung fields, pixel threshold "
              f"and minimum area chosen on the other folds (nested): Dice {ci(v['dice_nested'])}. Release choice (all folds): pixel "
              f"{s2['thresholds']['pixel']}, minimum area {s2['thresholds']['min_area_pixels']} px on the 256 grid (Dice {ci(v['dice_at_release_choice'])} "
              f"there, chosen on the same masks). The release file on real-dev's positives: Dice {s2['real_dev_dice_positives']}.", ""]
    lg = m["lungs"]
    g = lg["gate"]
    lines += ["### Lung fields and the not-a-chest-radiograph gate", "",
              f"Lung-field Dice on {len(lg['val_names'])} held-out lungs/ images: {lg['val_dice']:.3f}.", "",
              f"Not-a-chest-radiograph limits: contrast >= {lg['thresholds']['min_contrast']}, chest-or-not score >= "
              f"{lg['thresholds']['min_chest']}, lung share {lg['thresholds']['min_fraction']}-{lg['thresholds']['max_fraction']}, "
              f"smaller side's share >= {lg['thresholds']['min_side_share']}. The chest-or-not head learned from cxr-512/ only "
              "(and drawn non-radiographs and 180 face photographs); the DICOM files are 24 of the same radiographs. "
              "The other sources are held out from it.", "",
              "| real radiographs | n | refused | lowest chest-or-not score |", "|---|---|---|---|"]
    lines += [f"| {k}{'' if k in SEEN_BY_CHEST_HEAD else ' (held out)'} | {r['n']} | {r['refused']} | {r['chest_min']:.3f} |" for k, r in g["real"].items()]
    lines += ["", "| not a chest radiograph | n | refused (caught) | passed |", "|---|---|---|---|"]
    lines += [f"| {k} | {c2['n']} | {c2['caught']} | {', '.join(c2['missed']) or '-'} |" for k, c2 in g["non_chest"].items()]
    lines += ["", f"Inverted radiographs (a MONOCHROME1 file shown the wrong way round): {g['inverted']['refused']} of {g['inverted']['n']} refused.", ""]
    lines += ["### Latency", "", "x86-64 development machine (AMD EPYC, 2 cores, AVX2, no AVX-512), 1 thread, median of repeated runs on a real radiograph. "
              "tract through `ptxd bench`; onnxruntime with its default kernels (the peer runtime). "
              f"Measured by the release ({m['released']}), with the tract of that day; the classifier's rows are its score-only file, "
              "since shipped inside the segmenter's file and run once for both. Today's tract figures: docs/performance.md.", "",
              "| model | file | MB | onnxruntime s | tract s | tract / onnxruntime |", "|---|---|---|---|---|---|"]
    for name, per in m["latency"].items():
        for v2, r in per.items():
            t = r["tract_s"]
            tract = f"{t:.3f}" if t else "-"
            ratio = f"{t / r['onnxruntime_s']:.1f}x" if t else "-"
            lines.append(f"| {name} | {v2} | {r['size_mb']} | {r['onnxruntime_s']:.3f} | {tract} | {ratio} |")
    lines += ["", end]
    text = card.read_text()
    if begin in text and end in text:
        text = text[: text.index(begin)] + "\n".join(lines) + text[text.index(end) + len(end):]
    else:
        text += "\n" + "\n".join(lines) + "\n"
    card.write_text(text)


def main() -> None:
    m = json.loads((MODELS / "metrics.json").read_text())
    write_manifests(m)
    write_card_metrics(m)


if __name__ == "__main__":
    main()
