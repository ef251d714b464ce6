"""Inputs of a run: datasets (ImageFolder, manifests) and the audited model.

Importing this package is light; torch and torchvision are imported when a
model is loaded or images are read.
"""

from failscope.data.datasets import (
    ImageBatch,
    ImageDataset,
    iter_image_batches,
    load_dataset,
    load_dataset_from_spec,
    read_classes_file,
    to_rgb,
)
from failscope.data.models import (
    Predictions,
    load_checkpoint,
    load_model,
    model_spec,
    model_transform,
    predict,
    read_predictions,
    resolve_device,
)

__all__ = [
    "ImageBatch",
    "ImageDataset",
    "Predictions",
    "iter_image_batches",
    "load_checkpoint",
    "load_dataset",
    "load_dataset_from_spec",
    "load_model",
    "model_spec",
    "model_transform",
    "predict",
    "read_classes_file",
    "read_predictions",
    "resolve_device",
    "to_rgb",
]
