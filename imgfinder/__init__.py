"""imgfinder: find similar photos with fused ECA CNN features (ResNet50 or EfficientNet-Lite0) and an LSH index."""

__version__ = "0.1.0"
APP_NAME = "imgfinder"
