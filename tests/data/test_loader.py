"""The DataLoader (minitune/data/loader.py): padding, the reference orders, resume at any
batch, grouping by length.
"""
import json
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from minitune import data
from minitune.data import IGNORE_INDEX, DataLoader


def make_examples(n, seed=0, token_labels=False, max_len=20):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        length = int(rng.integers(2, max_len))
        ex = {"input_ids": rng.integers(1, 500, length).tolist(),
              "token_type_ids": rng.integers(0, 2, length).tolist()}
        if token_labels:
            ex["labels"] = rng.integers(-1, 9, length).tolist()
        else:
            ex["label"] = i % 3
        out.append(ex)
    return out


def all_batches(loader):
    return [{k: v.copy() for k, v in b.items()} | {"indices": b.indices} for b in loader]


def same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_padding_and_masks():
    examples = make_examples(5, token_labels=True)
    batch = DataLoader(examples, batch_size=5, pad_id=7).collate([3, 0, 4])
    lengths = [len(examples[i]["input_ids"]) for i in (3, 0, 4)]
    T = max(lengths)
    assert batch["input_ids"].shape == (3, T)
    for row, i in enumerate((3, 0, 4)):
        n = lengths[row]
        for key, pad in (("input_ids", 7), ("token_type_ids", 0), ("labels", IGNORE_INDEX)):
            assert batch[key].dtype == np.int64
            assert batch[key][row, :n].tolist() == examples[i][key]
            assert (batch[key][row, n:] == pad).all()
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (T - n)
    np.testing.assert_array_equal(batch.indices, [3, 0, 4])


def test_sequence_labels_and_missing_token_types():
    examples = [{"input_ids": [1, 2, 3], "label": 4}, {"input_ids": [5], "label": 6}]
    batch = next(iter(DataLoader(examples, batch_size=2)))
    assert batch["labels"].tolist() == [4, 6]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert batch["input_ids"].tolist() == [[1, 2, 3], [5, 0, 0]]


def test_mismatched_label_length_is_an_error():
    examples = [{"input_ids": [1, 2], "labels": [0, 0]}, {"input_ids": [1, 2], "labels": [0]}]
    with pytest.raises(ValueError, match="example 1: labels is length 1, input_ids has length 2"):
        DataLoader(examples, batch_size=2)


def test_shuffle_order_is_the_reference_permutation():
    n, bs, seed = 103, 8, 5
    loader = DataLoader(make_examples(n), batch_size=bs, shuffle=True, seed=seed)
    assert len(loader) == 13
    for epoch in range(3):
        loader.set_epoch(epoch)
        order = np.concatenate([b.indices for b in loader])
        np.testing.assert_array_equal(order, np.random.default_rng(seed + epoch).permutation(n))
    assert loader.epoch == 3  # a finished epoch moves the loader on


def test_sst2a_order_subset_without_shuffle():
    examples = make_examples(300)
    for e in examples:
        e["id"] = id(e)
    chosen = data.subset(examples, 100, seed=3)
    perm = np.random.default_rng(3).permutation(300)[:100]
    assert [e["id"] for e in chosen] == [examples[i]["id"] for i in perm]
    loader = DataLoader(chosen, batch_size=32, shuffle=False)
    batches = list(loader)
    assert [len(b["labels"]) for b in batches] == [32, 32, 32, 4]
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), np.arange(100))
    np.testing.assert_array_equal(batches[0]["labels"], [examples[i]["label"] for i in perm[:32]])
    # The same epoch 0 from a shuffling loader that keeps the first epoch in order.
    keep = DataLoader(chosen, batch_size=32, shuffle=True, seed=3, first_epoch_in_order=True)
    same_batches(all_batches(keep), all_batches(DataLoader(chosen, 32)))
    np.testing.assert_array_equal(np.concatenate([b.indices for b in keep]),
                                  np.random.default_rng(3 + 1).permutation(100))
    cd = data.ClassificationData([str(i) for i in range(10)], ["0"] * 10, lines=list(range(10)))
    assert data.subset(cd, 4, seed=1).texts == [str(i) for i in
                                                np.random.default_rng(1).permutation(10)[:4]]
    with pytest.raises(ValueError, match="subset of 11 examples requested, only 10"):
        data.subset(cd, 11, seed=0)


def test_loader_is_deterministic():
    examples = make_examples(77, token_labels=True)
    for kwargs in ({"shuffle": True, "seed": 1}, {"shuffle": True, "seed": 1,
                                                    "group_by_length": True}):
        a = DataLoader(examples, batch_size=6, **kwargs)
        b = DataLoader(examples, batch_size=6, **kwargs)
        for epoch in range(2):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            same_batches(all_batches(a), all_batches(b))
    c = all_batches(DataLoader(examples, batch_size=6, shuffle=True, seed=2))
    assert not all(np.array_equal(x["indices"], y["indices"])
                   for x, y in zip(c, all_batches(DataLoader(examples, 6, True, 1))))


def test_resume_mid_epoch_gives_the_remaining_batches():
    examples = make_examples(90, token_labels=True)
    full = DataLoader(examples, batch_size=8, shuffle=True, seed=4)
    expected = []
    for epoch in range(2):
        full.set_epoch(epoch)
        expected += all_batches(full)
    run = DataLoader(examples, batch_size=8, shuffle=True, seed=4)
    seen = []
    for batch in run:
        seen.append({k: v.copy() for k, v in batch.items()} | {"indices": batch.indices})
        if len(seen) == 5:
            break
    state = json.loads(json.dumps(run.state_dict()))  # survives a JSON round trip
    assert (state["epoch"], state["position"]) == (0, 5)
    resumed = DataLoader(examples, batch_size=8, shuffle=True, seed=4)
    resumed.load_state_dict(state)
    for epoch in range(0, 2):  # the usual loop: set_epoch keeps the restored position
        resumed.set_epoch(epoch)
        seen += all_batches(resumed)
    same_batches(seen, expected)


def test_next_batch_runs_on_across_epochs_like_the_iterator():
    examples = make_examples(20)
    stepped = DataLoader(examples, batch_size=8, shuffle=True, seed=1)
    batches = [stepped.next_batch() for _ in range(7)]       # 3 batches per epoch
    assert (stepped.epoch, stepped.position) == (2, 1)
    looped = DataLoader(examples, batch_size=8, shuffle=True, seed=1)
    expected = all_batches(looped) + all_batches(looped) + all_batches(looped)[:1]
    same_batches([{k: v for k, v in b.items()} | {"indices": b.indices} for b in batches],
                 expected)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), bs=st.integers(1, 9), stop=st.integers(0, 20),
       seed=st.integers(0, 5), grouped=st.booleans())
def test_resume_property(n, bs, stop, seed, grouped):
    examples = make_examples(n, seed=seed)
    ref = DataLoader(examples, bs, shuffle=True, seed=seed, group_by_length=grouped)
    expected = [b.indices for _ in range(2) for b in ref]
    run = DataLoader(examples, bs, shuffle=True, seed=seed, group_by_length=grouped)
    it = iter(run)
    head = [next(it).indices for _ in range(min(stop, len(run)))]
    state = run.state_dict()
    resumed = DataLoader(examples, bs, shuffle=True, seed=seed, group_by_length=grouped)
    resumed.load_state_dict(state)
    rest = [b.indices for b in resumed]
    rest += [b.indices for b in resumed]
    got = (head + rest)[: len(expected)]
    assert len(got) == len(expected)
    for x, y in zip(got, expected):
        np.testing.assert_array_equal(x, y)


def test_load_state_checks_settings():
    loader = DataLoader(make_examples(10), batch_size=4, shuffle=True, seed=0)
    state = loader.state_dict()
    other = DataLoader(make_examples(10), batch_size=5, shuffle=True, seed=1)
    with pytest.raises(ValueError, match=r"seed: saved 0, loader has 1; batch_size: saved 4, "
                                         r"loader has 5"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="position 9 is outside 0..3"):
        loader.load_state_dict({**state, "position": 9})


def test_group_by_length():
    examples = make_examples(1000, max_len=60)
    bs = 4
    loader = DataLoader(examples, batch_size=bs, shuffle=True, seed=0, group_by_length=True)
    plain = DataLoader(examples, batch_size=bs, shuffle=True, seed=0)
    batches = loader.batch_indices(0)
    order = np.concatenate(batches)
    assert sorted(order.tolist()) == list(range(1000))  # every example once
    # Each run of 50 batches holds the same examples as the plain shuffled order, sorted.
    perm = np.random.default_rng(0).permutation(1000)
    run = 50 * bs
    lengths = loader.lengths
    for s in range(0, 1000, run):
        assert set(order[s:s + run].tolist()) == set(perm[s:s + run].tolist())
        chunk_batches = batches[s // bs:(s + run) // bs]
        # Sorted before cutting: ranked by length, each batch's shortest example is at
        # least as long as the next batch's longest.
        ranked = sorted(chunk_batches, key=lambda b: (-lengths[b].max(), -lengths[b].min()))
        for longer, shorter in zip(ranked, ranked[1:]):
            assert lengths[longer].min() >= lengths[shorter].max()
    pad = lambda ldr: sum(b["input_ids"].size for b in ldr)  # noqa: E731
    assert pad(loader) < 0.8 * pad(plain)
    assert not np.array_equal(loader.batch_indices(1)[0], batches[0])  # differs per epoch


def test_drop_last_and_len():
    examples = make_examples(10)
    assert len(DataLoader(examples, 4)) == 3
    loader = DataLoader(examples, 4, drop_last=True)
    assert len(loader) == 2 and [len(b["labels"]) for b in loader] == [4, 4]
    with pytest.raises(ValueError, match="at least one example"):
        DataLoader([], 4)
