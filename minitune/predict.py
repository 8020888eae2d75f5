"""Predictions for raw text: a label with its probability (classify), or entities with
character spans (ner)."""
from pathlib import Path

from . import functional as F
from .autograd import no_grad
from .backend import asnumpy
from .data import cluener_record, word_tags
from .data.cluener import parse_record
from .data.readers import JSON_SUFFIXES
from .data.words import split_words as split_word_spans
from .metrics import get_entities


def split_words(text):
    """The words of text by BERT's rule (minitune.data.words: each CJK character, each
    punctuation mark, whitespace-separated runs), with character offsets:
    [(word, (start, end)), ...]."""
    return [(text[start:end], (start, end)) for start, end in split_word_spans(text)]


def trained_max_length(model):
    """The --max-len the model was fine-tuned with (kept in config.json), else its position
    limit."""
    return int(model.config.extra.get("minitune_max_length",
                                      model.config.max_position_embeddings))


def predict_texts(model, tokenizer, task, texts, max_len=None, batch_size=64):
    """Label each text. Returns one dict per text:

    classify: {"label", "probability", "probabilities": {label: p}}
    ner: {"entities": [{"type", "text", "start", "end"}], "words": [...], "tags": [...]}:
        one tag per word, words by BERT's rule (each Chinese character is one); an entity
        is text[start:end].
    """
    max_len = max_len or trained_max_length(model)
    id2label = model.config.id2label
    model.eval()
    results = []
    for s in range(0, len(texts), batch_size):
        chunk = texts[s:s + batch_size]
        if task == "classify":
            enc = tokenizer(chunk, max_length=max_len, padding=True, truncation=True)
            with no_grad():
                logits = model(enc["input_ids"], enc["attention_mask"],
                               enc["token_type_ids"]).logits
            probs = asnumpy(F.softmax(logits, axis=-1).data)
            for row in probs:
                k = int(row.argmax())
                results.append({"label": id2label[k], "probability": float(row[k]),
                                "probabilities": {id2label[i]: float(p)
                                                  for i, p in enumerate(row)}})
            continue
        words = [split_words(t) for t in chunk]
        enc = tokenizer([[w for w, _ in ws] or [""] for ws in words], is_split_into_words=True,
                        max_length=max_len, padding=True, truncation=True)
        with no_grad():
            logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]).logits
        pred = asnumpy(logits.data).argmax(-1)
        for i, (text, ws) in enumerate(zip(chunk, words)):
            tags = word_tags(pred[i], {"word_ids": enc.word_ids(i), "n_words": len(ws)},
                             id2label)
            entities = []
            for etype, first, last in get_entities(tags):
                start, end = ws[first][1][0], ws[last][1][1]
                entities.append({"type": etype, "text": text[start:end], "start": start,
                                 "end": end})
            results.append({"entities": entities, "words": [w for w, _ in ws], "tags": tags})
    return results


def read_texts(path):
    """Texts to label from a file: JSON lines with a "text" key (.json/.jsonl: CLUENER's
    format, whose "id" is kept and whose "label" is ignored), else one text per non-blank
    line. Returns (texts, ids), ids None where absent."""
    texts, ids = [], []
    is_json = Path(path).suffix.lower() in JSON_SUFFIXES
    with open(path, encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = parse_record(path, lineno, line) if is_json else {"text": line.rstrip("\n")}
            texts.append(record["text"])
            ids.append(record.get("id"))
    return texts, ids


def as_cluener(text, prediction, record_id=None):
    """An NER prediction of ``predict_texts`` as a CLUENER record (inclusive ends)."""
    spans = [(e["type"], e["start"], e["end"]) for e in prediction["entities"]]
    return cluener_record(text, spans, record_id)
