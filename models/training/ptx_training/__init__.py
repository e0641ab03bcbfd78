"""Training, export and quantization pipeline for ptxd's models (lung fields, classifier, segmenter).

Modules, in the order data flows through them:
  rle       SIIM run-length masks <-> arrays
  data      image/mask loading, hash splits, the SIIM PNG+mask layout
  real      the real validation protocol: real-labelled/ splits by patient, metrics with intervals
  synth     the pneumothorax synthesiser (real mask shapes on real radiographs): augmentation
  nets      the networks: UNet++ on EfficientNet-Lite0 (ImageNet weights), its score as a
            classifier, the Lite0 and DenseNet121 classifiers, the lung-field net
  train     training loops that see real images every epoch (one command per model)
  export    ONNX export, int8 quantization (per-channel)
  evaluate  metrics and ONNX/torch prediction helpers
  gate      the not-a-chest-radiograph limits and their catch rate
  release   everything measured on real val, the shipped files; card writes manifests and card
  reference reference vectors for the Rust side
"""

# Preprocessing contract shared by training, export, evaluation and the manifest.
# The daemon must reproduce it exactly (see models/manifest.toml).
INPUT_SIZE = 256
# The lung-field model's input (lung fields are large; 128 px costs a quarter of 256).
LUNG_SIZE = 128
MEAN = 0.5
STD = 0.25
