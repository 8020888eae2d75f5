"""Models: BERT and its task heads."""
from .bert import (BertConfig, BertForSequenceClassification, BertForTokenClassification,
                   BertModel, ModelOutput)

__all__ = ["BertConfig", "BertModel", "BertForSequenceClassification",
           "BertForTokenClassification", "ModelOutput"]
