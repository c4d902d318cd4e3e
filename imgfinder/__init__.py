"""imgfinder: find similar photos with fused ECA ResNet50 features and an LSH index."""

__version__ = "0.1.0"
APP_NAME = "imgfinder"
