"""Step 2: an :class:`ArchConfig` becomes a model: the EfficientViT family, its cost (params,
MACs), its deployment form (BN folded, traced, ONNX) and the bridge to timm's weights.
"""
