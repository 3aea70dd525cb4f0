"""Data: TFDS sources decoded into memory, splits, device-resident batches, augmentation."""

from jaxdl.data.augment import Augmentation, channel_stats, normalize, random_crop, random_flip
from jaxdl.data.device import (
    DeviceDataset,
    Preprocess,
    eval_batches,
    steps_per_epoch,
    to_device,
    train_batches,
)
from jaxdl.data.sources import ArrayDataset, load, resolve_data_dir
from jaxdl.data.split import train_val_split

__all__ = [
    "ArrayDataset",
    "Augmentation",
    "DeviceDataset",
    "Preprocess",
    "channel_stats",
    "eval_batches",
    "load",
    "normalize",
    "random_crop",
    "random_flip",
    "resolve_data_dir",
    "steps_per_epoch",
    "to_device",
    "train_batches",
    "train_val_split",
]
