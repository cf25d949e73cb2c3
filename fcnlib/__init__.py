"""fcnlib — the library behind the course on "Fully Convolutional Networks for Semantic Segmentation"
(Long, Shelhamer, Darrell, CVPR 2015). One module per idea of the paper; see CONTRIBUTING.md."""
from .results import start_run  # noqa: F401

__version__ = "0.1.0"
