"""Building blocks shared by the models: MLP, sine embeddings, channel LayerNorm."""

from edgedet.models.layers.embedding import box_sine_embedding, sine_position_embedding
from edgedet.models.layers.mlp import MLP
from edgedet.models.layers.norm import LayerNorm2d

__all__ = ["MLP", "LayerNorm2d", "box_sine_embedding", "sine_position_embedding"]
