"""Step 0 of the data path: image-classification data, always offline, one module per source
(synthetic, ImageFolder, CIFAR, IDX / Fashion-MNIST, streaming) behind :func:`load_data`."""

from effvit_nas.data.dataset import IMAGENET_MEAN, IMAGENET_STD, DataConfig, DataError, Dataset, normalize
from effvit_nas.data.factory import check_data, load_data

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DataConfig", "DataError", "Dataset", "check_data", "load_data", "normalize"]
