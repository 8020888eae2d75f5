"""Batches: ``DataLoader`` cuts encoded examples into padded, deterministic, resumable batches;
``subset`` draws the SST2-A training subset.

Reproducing the reference protocols (shared/reference/README.md):

* SST2-A: the training rows are ``default_rng(seed).permutation(67349)[:16000]``, used in
  exactly that order for one epoch, in consecutive chunks of 32::

      train = subset(read_classification(train_tsv), 16000, seed)   # or subset(examples, ...)
      loader = DataLoader(encode_classification(tok, train, label2id, 64), 32, shuffle=False)

  (``shuffle=True, seed=seed, first_epoch_in_order=True`` gives the same epoch 0 and
  reshuffles later epochs with ``default_rng(seed + e)``.)

* CONLL-A: epoch e visits the sentences in ``default_rng(seed + e).permutation(n)``, in
  consecutive chunks of 32, which is what ``DataLoader(..., shuffle=True, seed=seed)``
  does after ``set_epoch(e)``.
"""
import itertools

import numpy as np

from ..distributed.data_parallel import shard_bounds
from ..ops.loss import IGNORE_INDEX


def subset(examples, n, seed):
    """The SST2-A training subset: ``default_rng(seed).permutation(len(examples))[:n]``,
    in that order. Works on lists and on ClassificationData (n=None keeps all, shuffled)."""
    perm = np.random.default_rng(seed).permutation(len(examples))
    if n is not None:
        if n > len(examples):
            raise ValueError(f"subset of {n} examples requested, only {len(examples)} exist")
        perm = perm[:n]
    if hasattr(examples, "select"):                      # ClassificationData
        return examples.select(perm.tolist())
    return [examples[i] for i in perm]


class Batch(dict):
    """One batch: a dict of int64 arrays (input_ids, attention_mask, token_type_ids of
    shape (B, T); labels (B,) or (B, T)) with `.indices`, the example indices (B,)."""

    indices = None


def _ragged(values, lengths):
    """Concatenate ragged int sequences (total length lengths.sum()) into one int64 array."""
    total = int(lengths.sum())
    return np.fromiter(itertools.chain.from_iterable(values), dtype=np.int64, count=total)


class DataLoader:
    """Deterministic, resumable batches of encoded examples, padded to the batch's longest.

    Epoch e visits the examples in ``np.random.default_rng(seed + e).permutation(N)`` when
    shuffle, else in their given order, in consecutive chunks of batch_size (the last one
    may be short unless drop_last). With group_by_length, each run of 50 batches' worth of
    examples is sorted by length (longest first) before it is cut into batches, so a batch
    holds similar lengths and needs less padding; with shuffle the order of those batches
    inside the run is then shuffled by the same generator.

    Iterating yields the rest of the current epoch, starting at `position`; when an epoch
    is exhausted the loader moves on to the next one. ``state_dict()`` records (epoch,
    position), so a run restored with ``load_state_dict`` continues on the very next
    batch. Use one iterator at a time.

    Args:
        examples: dicts with input_ids (list of ints), optional token_type_ids, and either
            label (int, classification) or labels (list of ints, one per token).
        batch_size: B.
        shuffle, seed: see above.
        group_by_length: sort within runs of 50 batches by length.
        pad_id: input_ids padding value (token_type_ids pad with 0, labels with IGNORE_INDEX).
        drop_last: skip the final short batch.
        first_epoch_in_order: with shuffle, epoch 0 keeps the given order and only later
            epochs are shuffled (for examples that are already a random permutation, such as
            the SST2-A subset from ``subset``).
    """

    GROUP_BATCHES = 50

    def __init__(self, examples, batch_size, shuffle=False, seed=0, group_by_length=False,
                 pad_id=0, drop_last=False, first_epoch_in_order=False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(examples) == 0:
            raise ValueError("DataLoader needs at least one example")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.group_by_length = bool(group_by_length)
        self.pad_id = int(pad_id)
        self.drop_last = bool(drop_last)
        self.first_epoch_in_order = bool(first_epoch_in_order)
        self.num_examples = len(examples)
        self.epoch = 0
        self.position = 0
        self._plan_epoch, self._plan = None, None
        self.rank, self.world_size = 0, 1

        # Keep all sequences as flat int64 arrays + offsets: a batch is then one gather.
        self.lengths = np.array([len(e["input_ids"]) for e in examples], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self._ids = _ragged((e["input_ids"] for e in examples), self.lengths)
        first = examples[0]
        self._types = None
        if "token_type_ids" in first:
            self._check_lengths(examples, "token_type_ids")
            self._types = _ragged((e["token_type_ids"] for e in examples), self.lengths)
        self._token_labels = self._labels = None
        if "labels" in first:
            self._check_lengths(examples, "labels")
            self._token_labels = _ragged((e["labels"] for e in examples), self.lengths)
        elif "label" in first:
            self._labels = np.array([e["label"] for e in examples], dtype=np.int64)

    def _check_lengths(self, examples, key):
        for i, e in enumerate(examples):
            if key not in e or len(e[key]) != self.lengths[i]:
                got = "missing" if key not in e else f"length {len(e[key])}"
                raise ValueError(f"example {i}: {key} is {got}, input_ids has length "
                                 f"{self.lengths[i]}")

    def __len__(self):
        if self.drop_last:
            return self.num_examples // self.batch_size
        return -(-self.num_examples // self.batch_size)

    def set_epoch(self, epoch):
        """Select epoch `epoch`'s order. The position is kept when `epoch` is already the
        current epoch (so a restored loader continues mid-epoch), else it restarts at 0."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self.position = 0

    def batch_indices(self, epoch=None):
        """The example indices of every batch of an epoch: a list of int64 arrays (B,)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._plan_epoch != epoch:
            self._plan, self._plan_epoch = self._make_plan(epoch), epoch
        return self._plan

    def _make_plan(self, epoch):
        n, bs = self.num_examples, self.batch_size
        shuffle = self.shuffle and not (self.first_epoch_in_order and epoch == 0)
        rng = np.random.default_rng(self.seed + epoch) if shuffle else None
        order = rng.permutation(n) if shuffle else np.arange(n)
        if self.drop_last:
            order = order[: len(self) * bs]
        if not self.group_by_length:
            return [order[s:s + bs] for s in range(0, len(order), bs)]
        plan = []
        run = bs * self.GROUP_BATCHES
        for s in range(0, len(order), run):
            chunk = order[s:s + run]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches = [chunk[k:k + bs] for k in range(0, len(chunk), bs)]
            if shuffle:
                batches = [batches[k] for k in rng.permutation(len(batches))]
            plan.extend(batches)
        return plan

    def _pad(self, flat, idx, width, pad_value):
        """Gather the sequences `idx` from `flat` into a (B, width) array padded with
        pad_value, and return it with the (B, width) validity mask."""
        cols = np.arange(width)
        valid = cols[None, :] < self.lengths[idx][:, None]  # (B, T)
        gather = np.where(valid, self.offsets[idx][:, None] + cols[None, :], 0)
        out = flat[gather] if flat.size else np.zeros(gather.shape, dtype=np.int64)
        out[~valid] = pad_value
        return out, valid

    def collate(self, idx):
        """The Batch of the examples at indices idx (B,)."""
        idx = np.asarray(idx, dtype=np.int64)
        width = int(self.lengths[idx].max()) if idx.size else 0   # a rank's empty share
        input_ids, valid = self._pad(self._ids, idx, width, self.pad_id)
        batch = Batch(input_ids=input_ids, attention_mask=valid.astype(np.int64))
        if self._types is not None:
            batch["token_type_ids"] = self._pad(self._types, idx, width, 0)[0]
        else:
            batch["token_type_ids"] = np.zeros_like(input_ids)
        if self._token_labels is not None:
            batch["labels"] = self._pad(self._token_labels, idx, width, IGNORE_INDEX)[0]
        elif self._labels is not None:
            batch["labels"] = self._labels[idx]
        batch.indices = idx
        return batch

    def next_batch(self):
        """The batch at (epoch, position), stepping past it; a used-up epoch moves on to the
        next. (epoch, position) always names the next batch, so saving ``state_dict()``
        between any two batches gives an exact resume point."""
        if self.position >= len(self):
            self.set_epoch(self.epoch + 1)
        idx = self.batch_indices()[self.position]
        self.position += 1
        if self.world_size > 1:
            idx = idx[slice(*shard_bounds(len(idx), self.rank, self.world_size))]
        return self.collate(idx)

    def shard(self, rank, world_size):
        """Data parallelism: from now on ``next_batch`` returns only rank ``rank``'s share of
        each batch (``shard_bounds``: contiguous, sizes differing by at most one, possibly
        empty). The batches themselves, their order, ``len()`` and ``state_dict()`` stay those
        of the single-process run, so every example is seen once per epoch across the ranks
        and a checkpoint resumes on any number of ranks."""
        if not 0 <= rank < world_size:
            raise ValueError(f"shard: rank {rank} is outside 0..{world_size - 1}")
        self.rank, self.world_size = int(rank), int(world_size)

    def __iter__(self):
        """The rest of the current epoch, from ``position``; then the next epoch is selected."""
        while self.position < len(self):
            yield self.next_batch()
        self.set_epoch(self.epoch + 1)

    def _config(self):
        return {"seed": self.seed, "batch_size": self.batch_size, "shuffle": self.shuffle,
                "group_by_length": self.group_by_length, "drop_last": self.drop_last,
                "first_epoch_in_order": self.first_epoch_in_order,
                "num_examples": self.num_examples}

    def state_dict(self):
        """{'epoch', 'position'} plus the settings that fix the order (checked on load)."""
        return {"epoch": self.epoch, "position": self.position, **self._config()}

    def load_state_dict(self, state):
        """Restore (epoch, position); the order-defining settings must match."""
        mismatched = [f"{k}: saved {state[k]!r}, loader has {v!r}"
                      for k, v in self._config().items() if k in state and state[k] != v]
        if mismatched:
            raise ValueError("DataLoader state does not match this loader: "
                             + "; ".join(mismatched))
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"DataLoader state position {position} is outside 0..{len(self)}")
        self.epoch, self.position = int(state["epoch"]), position
