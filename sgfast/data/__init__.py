"""Data: loaders of the real formats (CUB-200-2011, Stanford Cars, Virtual KITTI 2, image folders)
and the procedural data sets (synthetic birds, multi-object scenes). Formats: docs/data.md."""
from .datasets import (CUB200, DatasetFormatError, ImageFolder, SampleDataset, StanfordCars,  # noqa: F401
                       SyntheticScenes, VirtualKitti2, open_dataset, to_tensors)
from .imageio import ImageReadError, read_image_rgb, read_label_map, read_mask  # noqa: F401
