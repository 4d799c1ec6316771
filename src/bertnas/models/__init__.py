"""Model classes bertnas hands back to users (Hugging Face compatible)."""
from .adabert import AdaBertConfig, AdaBertForSequenceClassification, register_auto_classes

__all__ = ["AdaBertConfig", "AdaBertForSequenceClassification", "register_auto_classes"]
