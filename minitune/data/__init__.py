"""Reading, encoding and batching of fine-tuning data, one module per step.

    readers   read_labelled / read_classification (TSV, CSV, JSON lines) / read_conll,
              read_texts (texts to label)
    cluener   read_cluener (CLUENER span JSON -> word BIO tags), cluener_record (and back)
    words     split_words (BERT's word rule: each CJK character a word) and character spans
    labels    build_label_map (the id -> label order), check_labels (unknown labels)
    encoding  encode_classification / encode_ner, word_starts and word_tags (word alignment)
    loader    DataLoader (padded, deterministic, resumable batches), subset (SST2-A)

Pipeline::

    train = read_classification("train.tsv")              # or read_conll("train.txt")
    id2label = build_label_map(train.labels)
    dev = read_classification("dev.tsv")
    check_labels(dev, id2label)                           # clear error for unseen labels
    examples = encode_classification(tokenizer, train, id2label, max_length=64)
    loader = DataLoader(examples, batch_size=32, shuffle=True, seed=0)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for batch in loader:                              # dict of (B, T) / (B,) int64 arrays
            ...
"""
from ..ops.loss import IGNORE_INDEX
from .encoding import (encode_classification, encode_ner, encode_texts, encode_words,
                       word_starts, word_tags)
from .labels import build_label_map, check_labels
from .loader import Batch, DataLoader, subset
from .readers import (ClassificationData, ConllData, read_classification, read_conll,
                      read_labelled, read_texts)
from .cluener import SpanData, cluener_record, read_cluener
from .words import split_words

__all__ = [
    "ClassificationData", "ConllData", "read_labelled", "read_classification", "read_conll",
    "read_texts", "SpanData", "read_cluener", "cluener_record", "split_words",
    "build_label_map", "check_labels", "encode_texts", "encode_classification", "encode_words",
    "encode_ner", "word_starts", "word_tags", "subset", "Batch", "DataLoader", "IGNORE_INDEX",
]
