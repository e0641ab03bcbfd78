"""Training, export and quantization pipeline for ptxd's two models.

Modules, in the order data flows through them:
  rle      SIIM run-length masks <-> arrays
  data     image/mask loading, splits, the SIIM PNG+mask layout
  synth    the pneumothorax synthesiser (real mask shapes on real radiographs)
  nets     DenseNet121 classifier and UNet++ / EfficientNet-Lite0 segmenter
  train    training loops (one command per model)
  export   ONNX export, pre-processing for quantization, int8 quantization
  evaluate metrics on synthetic and real labelled data
  reference reference vectors for the Rust side
"""

# Preprocessing contract shared by training, export, evaluation and the manifest.
# The daemon must reproduce it exactly (see models/manifest.toml).
INPUT_SIZE = 256
# The lung-field model's input (lung fields are large; 128 px costs a quarter of 256).
LUNG_SIZE = 128
MEAN = 0.5
STD = 0.25
