"""The offline semantic step: prompts, text encoders, the embedding cache, PCA and similar users."""

from llmesr.semantic.cache import embed_texts
from llmesr.semantic.encoder_table import make_encoder
from llmesr.semantic.encoders import EncoderError, TextEncoder, load_precomputed
from llmesr.semantic.local_encoders import HuggingFaceEncoder, MiniLMEncoder, SentenceTransformerEncoder
from llmesr.semantic.openai_encoder import OpenAIEncoder
from llmesr.semantic.pca import pca_project
from llmesr.semantic.prompts import ITEM_TEMPLATES, PromptTemplate, item_prompts, user_prompts
from llmesr.semantic.retrieval import recall_at_k, similar_users

__all__ = [
    "EncoderError",
    "TextEncoder",
    "MiniLMEncoder",
    "SentenceTransformerEncoder",
    "HuggingFaceEncoder",
    "OpenAIEncoder",
    "load_precomputed",
    "make_encoder",
    "embed_texts",
    "pca_project",
    "ITEM_TEMPLATES",
    "PromptTemplate",
    "item_prompts",
    "user_prompts",
    "similar_users",
    "recall_at_k",
]
