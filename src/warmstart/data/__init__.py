"""Data loading, validation, splits and few-shot sampling."""

from .datasets import Dataset, check_labels_seen, join_datasets
from .image import from_arrays, image_at, load_image_folder, read_image
from .packaged import PACKAGED, load_packaged
from .splits import Split, few_shot, stratified_split
from .text import load_text

__all__ = [
    "Dataset",
    "Split",
    "check_labels_seen",
    "join_datasets",
    "few_shot",
    "from_arrays",
    "image_at",
    "load_image_folder",
    "load_packaged",
    "load_text",
    "read_image",
    "stratified_split",
    "PACKAGED",
]
