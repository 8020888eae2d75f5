"""BERT WordPiece tokenization on top of Hugging Face's Rust ``tokenizers`` library.

The Rust library does the work (normalize -> pre-tokenize -> WordPiece -> add [CLS]/[SEP],
batched and in parallel); this module loads it from a model directory, sets padding and
truncation for each call, and returns NumPy arrays.

Loading follows ``transformers``' BertTokenizerFast: ``tokenizer.json`` if present, else
a tokenizer built from ``vocab.txt`` with the options of ``tokenizer_config.json``
(``do_lower_case``, ``strip_accents``, ``tokenize_chinese_chars``), which also override
those of the normalizer in ``tokenizer.json`` when they differ. Many Chinese checkpoints
(bert-base-chinese, RoBERTa-wwm-ext, MacBERT) ship the second way: ``vocab.txt``, maybe
``added_tokens.json``, and no ``tokenizer.json``; tests/models/test_bert_chinese_parity.py checks
the ids against transformers' on every text of the shared Chinese data.

A ``tokenizer.json`` can carry preset padding/truncation (all-MiniLM-L6-v2's pads every
sequence to 128). The constructor clears both; each ``Tokenizer.__call__`` then sets exactly
what it asks for, touching the Rust side only when that differs from the previous call.
"""

import json
from pathlib import Path

import numpy as np

from .errors import CheckpointError

# Names of the special tokens in tokenizer_config.json / special_tokens_map.json.
SPECIAL_TOKEN_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULT_SPECIAL_TOKENS = {
    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
    "cls_token": "[CLS]", "mask_token": "[MASK]",
}


class Encoding(dict):
    """The result of ``Tokenizer.__call__``: a dict with extra per-example accessors.

    Keys ``input_ids``, ``token_type_ids``, ``attention_mask``: int64 arrays of shape
    (B, T) when padded, else lists of B lists (ragged).
    """

    def __init__(self, data, encodings):
        super().__init__(data)
        self._encodings = encodings

    def word_ids(self, i=0):
        """Word index of each token of example ``i`` (None for [CLS], [SEP], padding).

        Words are the pre-tokenizer's (whitespace and punctuation split), or the given
        words with ``is_split_into_words=True``. In a pair, the second text counts its
        words from 0 again (see ``sequence_ids``).
        """
        return list(self._encodings[i].word_ids)

    def sequence_ids(self, i=0):
        """0 or 1 for tokens of the first/second text of example ``i``, else None."""
        return list(self._encodings[i].sequence_ids)

    def tokens(self, i=0):
        """The token strings of example ``i``."""
        return list(self._encodings[i].tokens)


class Tokenizer:
    """A BERT WordPiece tokenizer.

    Build one with ``Tokenizer.from_pretrained(path_or_name)`` or
    ``Tokenizer.from_vocab(vocab)``; the constructor wraps a ``tokenizers.Tokenizer``.

    Args:
        backend: a ``tokenizers.Tokenizer`` (with BERT post-processing).
        config: tokenizer_config.json-style dict (special tokens, do_lower_case, ...).
    """

    def __init__(self, backend, config=None):
        self._backend = backend
        self.config = dict(config or {})
        self.special_tokens = {
            key: _token_content(self.config.get(key, default))
            for key, default in DEFAULT_SPECIAL_TOKENS.items()
        }
        self.model_max_length = int(self.config.get("model_max_length", 512))
        if self.model_max_length > 1_000_000:  # HF's "no limit" sentinel (~1e30)
            self.model_max_length = 512
        self.unk_token_id = self._required_id("unk_token")
        self.sep_token_id = self._required_id("sep_token")
        self.pad_token_id = self._required_id("pad_token")
        self.cls_token_id = self._required_id("cls_token")
        self.mask_token_id = backend.token_to_id(self.special_tokens["mask_token"])
        backend.no_padding()
        backend.no_truncation()
        self._settings = (None, False, False)     # (max_length, padding, truncation) set now

    def _required_id(self, key):
        token = self.special_tokens[key]
        token_id = self._backend.token_to_id(token)
        if token_id is None:
            raise ValueError(f"{key} {token!r} is not in the vocabulary")
        return token_id

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path_or_name):
        """Load from a model directory, the bundled MiniLM alias, or a Hub repo id.

        Uses ``tokenizer.json`` when present, else ``vocab.txt``; options come from
        ``tokenizer_config.json`` and ``special_tokens_map.json`` when present.
        """
        # io/ (checkpoint readers, the unpickler) loads when a model is first read, not
        # with `import minitune`
        from .io.hub import resolve_model_dir
        from .io.tokenizer_files import read_tokenizer_config, read_tokenizer_json

        model_dir = resolve_model_dir(path_or_name)
        config = read_tokenizer_config(model_dir)
        tokenizer_json, vocab_txt = model_dir / "tokenizer.json", model_dir / "vocab.txt"
        try:
            if tokenizer_json.is_file():
                backend = read_tokenizer_json(tokenizer_json)
                _override_normalizer(backend, config)
                return cls(backend, config)
            if vocab_txt.is_file():
                tokenizer = cls.from_vocab(vocab_txt, **_vocab_options(config))
                _add_listed_tokens(tokenizer.backend, model_dir / "added_tokens.json")
                return tokenizer
        except CheckpointError:
            raise
        except ValueError as e:  # e.g. a special token the vocabulary lacks
            used = tokenizer_json if tokenizer_json.is_file() else vocab_txt
            raise CheckpointError(f"{used}: {e}", path=used) from None
        raise CheckpointError(
            f"{model_dir}: no tokenizer found; looked for tokenizer.json and vocab.txt",
            path=model_dir)

    @classmethod
    def from_vocab(cls, vocab, do_lower_case=True, strip_accents=None,
                   tokenize_chinese_chars=True, model_max_length=512, special_tokens=None):
        """Build a BERT tokenizer from a WordPiece vocabulary.

        Args:
            vocab: path of a vocab.txt (one token per line, id = line number) or a list
                of tokens.
            do_lower_case: lowercase the text (uncased models).
            strip_accents: remove accents; None means "same as do_lower_case".
            tokenize_chinese_chars: put spaces around CJK characters.
            model_max_length: default ``max_length`` when truncating.
            special_tokens: overrides of DEFAULT_SPECIAL_TOKENS (e.g. {"unk_token": "<unk>"}).
        """
        from tokenizers import Tokenizer as RustTokenizer
        from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

        from .io.tokenizer_files import read_vocab

        tokens = read_vocab(vocab) if isinstance(vocab, (str, Path)) else list(vocab)
        token_to_id = {token: i for i, token in enumerate(tokens)}
        specials = {**DEFAULT_SPECIAL_TOKENS, **(special_tokens or {})}
        for key in ("unk_token", "cls_token", "sep_token", "pad_token"):
            if specials[key] not in token_to_id:
                raise ValueError(f"vocabulary lacks the {key} {specials[key]!r}")
        backend = RustTokenizer(models.WordPiece(
            token_to_id, unk_token=specials["unk_token"], max_input_chars_per_word=100))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=tokenize_chinese_chars,
            strip_accents=strip_accents, lowercase=do_lower_case)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        cls_token, sep_token = specials["cls_token"], specials["sep_token"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep_token}:0",
            pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
            special_tokens=[(cls_token, token_to_id[cls_token]),
                            (sep_token, token_to_id[sep_token])],
        )
        backend.decoder = decoders.WordPiece(prefix="##")
        # Special tokens are matched whole in the input and skipped by decode().
        backend.add_special_tokens([t for t in specials.values() if t in token_to_id])
        config = {
            **specials, "do_lower_case": do_lower_case, "strip_accents": strip_accents,
            "tokenize_chinese_chars": tokenize_chinese_chars,
            "model_max_length": model_max_length,
        }
        return cls(backend, config)

    # --- encoding -----------------------------------------------------------------------

    def __call__(self, texts, text_pairs=None, max_length=128, padding=True, truncation=True,
                 is_split_into_words=False):
        """Tokenize a batch of texts (or text pairs) into model inputs.

        Args:
            texts: a string or a list of B strings; with ``is_split_into_words=True``, a
                list of B lists of words (a single list of strings is one example).
            text_pairs: optional second texts, same structure and length as ``texts``;
                encoded as [CLS] A [SEP] B [SEP] with token_type_ids 0 then 1.
            max_length: maximum tokens per example, [CLS]/[SEP] included. None means
                ``model_max_length``.
            padding: True or "longest" pads to the longest example of the batch;
                "max_length" pads to ``max_length``; False returns ragged lists.
            truncation: True cuts examples to ``max_length`` (pairs: longest_first,
                removing tokens from the longer text first, as Hugging Face does).
                False raises ValueError for any example longer than ``max_length``.
            is_split_into_words: the inputs are lists of words (e.g. CoNLL tokens).

        Returns:
            Encoding with input_ids, token_type_ids, attention_mask: int64 (B, T) arrays
            when padding, else lists of lists.
        """
        if max_length is None:
            max_length = self.model_max_length
        inputs = self._batch_inputs(texts, text_pairs, is_split_into_words)
        n_special = 2 if text_pairs is None else 3            # [CLS] A [SEP] (B [SEP])
        if truncation and max_length <= n_special:
            # the Rust tokenizer would silently not truncate at all
            raise ValueError(f"max_length {max_length} leaves no room for text: [CLS] and "
                             f"[SEP] take {n_special} positions; use {n_special + 1} or more")
        self._configure(max_length, padding, truncation)
        try:
            encodings = self._backend.encode_batch(inputs, is_pretokenized=is_split_into_words)
        except Exception as e:  # noqa: BLE001 - the Rust side raises a plain Exception
            raise ValueError(f"tokenization failed: {e}") from None
        if not truncation:
            _check_lengths(encodings, max_length)
        return Encoding(_collect(encodings, bool(padding)), encodings)

    def _configure(self, max_length, padding, truncation):
        """Set the padding and truncation of the Rust tokenizer to what a call asks, when they
        differ from the last call's."""
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', "
                             f"got {padding!r}")
        if (max_length, padding, truncation) == self._settings:
            return
        backend = self._backend
        backend.no_padding()
        backend.no_truncation()
        if truncation:
            backend.enable_truncation(max_length, strategy="longest_first")
        if padding and padding != "do_not_pad":
            length = max_length if padding == "max_length" else None
            backend.enable_padding(pad_id=self.pad_token_id, pad_type_id=0,
                                   pad_token=self.special_tokens["pad_token"], length=length)
        self._settings = (max_length, padding, truncation)

    @staticmethod
    def _batch_inputs(texts, text_pairs, is_split_into_words):
        """Check the inputs and shape them as encode_batch wants: items or (a, b) pairs."""
        texts = _as_batch(texts, is_split_into_words, "texts")
        if text_pairs is None:
            return texts
        pairs = _as_batch(text_pairs, is_split_into_words, "text_pairs")
        if len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} text_pairs")
        return list(zip(texts, pairs))

    def tokenize(self, text):
        """The WordPiece tokens of one text, without [CLS]/[SEP]."""
        self._configure(None, False, False)
        return self._backend.encode(text, add_special_tokens=False).tokens

    # --- ids and tokens -----------------------------------------------------------------

    def decode(self, ids, skip_special_tokens=True):
        """Token ids (list or 1-D array) -> text, joining "##" word pieces."""
        ids = _id_list(ids)
        if ids and isinstance(ids[0], list):
            raise ValueError("decode takes one sequence of ids; use batch_decode for a batch")
        return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch, skip_special_tokens=True):
        """A (B, T) array or list of id lists -> list of B texts."""
        return self._backend.decode_batch([_id_list(row) for row in batch],
                                          skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids):
        """An id -> its token; a list/array of ids -> list of tokens."""
        if isinstance(ids, (int, np.integer)):
            return self._id_to_token(int(ids))
        return [self._id_to_token(i) for i in _id_list(ids)]

    def _id_to_token(self, token_id):
        token = self._backend.id_to_token(token_id)
        if token is None:
            raise ValueError(f"token id {token_id} is outside the vocabulary (size {len(self)})")
        return token

    def convert_tokens_to_ids(self, tokens):
        """A token -> its id; a list of tokens -> list of ids. Unknown tokens -> unk id."""
        if isinstance(tokens, str):
            token_id = self._backend.token_to_id(tokens)
            return self.unk_token_id if token_id is None else token_id
        return [self.convert_tokens_to_ids(t) for t in tokens]

    @property
    def vocab_size(self):
        """Size of the WordPiece vocabulary (without added tokens), like Hugging Face."""
        return self._backend.get_vocab_size(with_added_tokens=False)

    def __len__(self):
        """Vocabulary size including added tokens: the model needs this many embeddings."""
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self):
        """dict token -> id (added tokens included)."""
        return self._backend.get_vocab(with_added_tokens=True)

    @property
    def backend(self):
        """The underlying ``tokenizers.Tokenizer``."""
        return self._backend

    # --- saving -------------------------------------------------------------------------

    def save_pretrained(self, directory):
        """Write tokenizer.json, vocab.txt, tokenizer_config.json, special_tokens_map.json.

        Each file is written atomically. tokenizer.json is saved without padding or
        truncation (those are per-call settings). Returns the directory as a Path.
        """
        from .io.atomic import atomic_write_text

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._configure(None, False, False)
        atomic_write_text(directory / "tokenizer.json", self._backend.to_str(pretty=True))
        atomic_write_text(directory / "vocab.txt", "".join(t + "\n" for t in self._vocab_list()))
        atomic_write_text(directory / "tokenizer_config.json",
                          json.dumps(self._config_to_save(), indent=2) + "\n")
        atomic_write_text(directory / "special_tokens_map.json",
                          json.dumps(self.special_tokens, indent=2) + "\n")
        return directory

    def _vocab_list(self):
        """WordPiece tokens ordered by id, one per id 0..max id.

        A vocab.txt with a duplicated token leaves an id without a token (the last
        line wins); that id gets a placeholder so the line numbers, i.e. the ids of
        all other tokens, stay the same on reload.
        """
        id_to_token = {i: t for t, i in self._backend.get_vocab(with_added_tokens=False).items()}
        size = max(id_to_token) + 1 if id_to_token else 0
        return [id_to_token.get(i, f"[minitune-unused-id-{i}]") for i in range(size)]

    def _config_to_save(self):
        normalizer = _normalizer_state(self._backend)
        return {
            "do_lower_case": normalizer.get("lowercase", self.config.get("do_lower_case", True)),
            "strip_accents": normalizer.get("strip_accents", self.config.get("strip_accents")),
            "tokenize_chinese_chars": normalizer.get(
                "handle_chinese_chars", self.config.get("tokenize_chinese_chars", True)),
            **self.special_tokens,
            "model_max_length": self.model_max_length,
            "tokenizer_class": "BertTokenizer",
        }


# --- helpers ------------------------------------------------------------------------------


def _token_content(value):
    """Special tokens are strings or AddedToken dicts {"content": ...} in config files."""
    return value["content"] if isinstance(value, dict) else value


def _add_listed_tokens(backend, path):
    """Add the tokens of an added_tokens.json ({token: id}) after the vocabulary, as
    transformers does: matched whole in the normalized text, not special (kept by decode).
    Their ids must continue the vocabulary (vocab size, vocab size + 1, ...)."""
    from tokenizers import AddedToken

    from .io.json_io import read_json

    if not path.is_file():
        return
    listed = read_json(path, what="added tokens")
    if not isinstance(listed, dict) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in listed.values()):
        raise CheckpointError(f"{path}: expected a JSON object {{token: id}}", path=path)
    for token, token_id in sorted(listed.items(), key=lambda item: item[1]):
        if backend.token_to_id(token) == token_id:
            continue  # already in vocab.txt with that id
        if token_id != backend.get_vocab_size(with_added_tokens=True):
            raise CheckpointError(
                f"{path}: token {token!r} has id {token_id}, but the next free id after the "
                f"vocabulary is {backend.get_vocab_size(with_added_tokens=True)}", path=path)
        backend.add_tokens([AddedToken(token, normalized=True)])


def _vocab_options(config):
    """tokenizer_config.json -> keyword arguments of Tokenizer.from_vocab."""
    return {
        "do_lower_case": config.get("do_lower_case", True),
        "strip_accents": config.get("strip_accents"),
        "tokenize_chinese_chars": config.get("tokenize_chinese_chars", True),
        "model_max_length": config.get("model_max_length", 512),
        "special_tokens": {k: _token_content(config[k]) for k in SPECIAL_TOKEN_KEYS
                           if isinstance(config.get(k), (str, dict))},
    }


def _override_normalizer(backend, config):
    """Let tokenizer_config.json's casing options win over tokenizer.json's normalizer.

    transformers' BertTokenizerFast does the same, so a tokenizer.json whose
    BertNormalizer disagrees with do_lower_case/strip_accents/tokenize_chinese_chars
    tokenizes as Hugging Face would.
    """
    from tokenizers import normalizers

    state = _normalizer_state(backend)
    if state.get("type") != "BertNormalizer":
        return
    wanted = {
        "lowercase": config.get("do_lower_case", state.get("lowercase")),
        "strip_accents": config.get("strip_accents", state.get("strip_accents")),
        "handle_chinese_chars": config.get(
            "tokenize_chinese_chars", state.get("handle_chinese_chars")),
    }
    if all(state.get(k) == v for k, v in wanted.items()):
        return
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=state.get("clean_text", True), **wanted)


def _normalizer_state(backend):
    """The normalizer's settings as a dict (without serializing the whole vocabulary)."""
    if backend.normalizer is None:
        return {}
    return json.loads(backend.normalizer.__getstate__())


def _as_batch(texts, is_split_into_words, what):
    """Normalize inputs to a list of examples and check every item's type."""
    if is_split_into_words:
        if isinstance(texts, (list, tuple)) and texts and all(isinstance(w, str) for w in texts):
            texts = [texts]  # one pre-split example
        batch = [list(words) for words in texts]
        for i, words in enumerate(batch):
            bad = [w for w in words if not isinstance(w, str)]
            if bad:
                raise TypeError(f"{what}[{i}]: words must be strings, got {bad[0]!r}")
        return batch
    if isinstance(texts, str):
        return [texts]
    batch = list(texts)
    for i, text in enumerate(batch):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is a {type(text).__name__}, expected a string "
                            "(lists of words need is_split_into_words=True)")
    return batch


def _check_lengths(encodings, max_length):
    """With truncation off, an example longer than max_length is an error."""
    for i, encoding in enumerate(encodings):
        length = sum(encoding.attention_mask)  # real tokens, padding excluded
        if length > max_length:
            raise ValueError(
                f"example {i} has {length} tokens, more than max_length="
                f"{max_length}, and truncation is off"
            )


def _collect(encodings, padded):
    """Rust encodings -> {key: (B, T) int64 array} when padded, else lists of lists."""
    rows = {
        "input_ids": [e.ids for e in encodings],
        "token_type_ids": [e.type_ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
    }
    if not padded:
        return rows
    length = len(rows["input_ids"][0]) if encodings else 0
    return {key: np.array(value, dtype=np.int64).reshape(len(encodings), length)
            for key, value in rows.items()}


def _id_list(ids):
    """Array or sequence of ids -> list of Python ints (nested for 2-D input)."""
    if isinstance(ids, np.ndarray):
        return ids.tolist()
    return [_id_list(i) if isinstance(i, (list, tuple, np.ndarray)) else int(i) for i in ids]
