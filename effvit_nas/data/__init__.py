"""Step 0 of the data path: image-classification data, always offline (see
:mod:`effvit_nas.data.dataset`)."""

from effvit_nas.data.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    DataError,
    Dataset,
    check_data,
    first_classes,
    load_data,
    normalize,
    resize_uint8,
    subsample,
    synthetic_split,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DataConfig",
    "DataError",
    "Dataset",
    "check_data",
    "first_classes",
    "load_data",
    "normalize",
    "resize_uint8",
    "subsample",
    "synthetic_split",
]
