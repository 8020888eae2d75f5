"""minitune.io.pickle_vm: the pickle machine builds exactly what Python's pickle builds for
plain data, and refuses the rest (globals, object construction, sets, deep key nesting)."""

import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minitune import CheckpointError, UnsafeCheckpointError
from minitune.io.pickle_vm import run_pickle


def no_globals(module, name):
    raise UnsafeCheckpointError(f"global {module}.{name}")


def load(data, calls=None, find_global=no_globals, persistent_load=None):
    value, end = run_pickle(data, "test.pkl", find_global, calls or {}, persistent_load)
    assert end == len(data)
    return value


keys = st.one_of(st.text(max_size=5), st.integers(-2**40, 2**40), st.booleans(), st.none(),
                 st.binary(max_size=4))
plain_data = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**100, 2**100),
              st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.tuples(inner),
                            st.tuples(inner, inner), st.tuples(inner, inner, inner),
                            st.lists(inner, max_size=5).map(tuple),
                            st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25)


@given(value=plain_data, protocol=st.integers(3, 5))  # 2 pickles bytes via a global call
def test_same_value_as_pythons_pickle(value, protocol):
    assert load(pickle.dumps(value, protocol=protocol)) == value


def test_shared_references_stay_shared():
    inner = [1, 2]
    value = load(pickle.dumps([inner, inner], protocol=2))
    assert value[0] is value[1]


def test_reduce_calls_only_the_given_functions():
    def pair(a, b):
        return (a, b)

    data = b"\x80\x02cm\npair\nK\x01K\x02\x86R."
    assert load(data, {pair: (2, 2)}, lambda m, n: pair) == (1, 2)
    with pytest.raises(CheckpointError, match="takes 2 to 2 arguments"):
        load(b"\x80\x02cm\npair\nK\x01\x85R.", {pair: (2, 2)}, lambda m, n: pair)
    with pytest.raises(CheckpointError, match="REDUCE calls"):
        load(b"\x80\x02cm\npair\nK\x01K\x02\x86R.", {}, lambda m, n: pair)
    with pytest.raises(UnsafeCheckpointError, match="global os.system"):
        load(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.")


@pytest.mark.parametrize("data, message", [
    (b"\x80\x02(iposix\nsystem\n.", "INST imports"),
    (b"\x80\x02N(\x8f.", "EMPTY_SET never appears"),
    (b"\x80\x02)\x91.", "FROZENSET never appears"),
    (b"\x80\x02\x82\x01.", "EXT1 imports"),
    (b"\x80\x02NN\x81.", "NEWOBJ imports"),
    (b"\x80\x02I1\n.", "INT \\(text\\) never appears"),
    (b"\x80\x06N.", "protocol 6"),
    (b"\x80\x02\xff.", "unknown opcode"),
    (b"\x80\x02})\x85Ns.", "dict key is a tuple"),
    (b"\x80\x02}]Ns.", "dict key is a list"),
    (b"\x80\x02NNb.", "BUILD .* on a NoneType"),
    (b"\x80\x02a.", "stack is empty"),
    (b"\x80\x02t.", "needs a MARK"),
    (b"\x80\x02h\x05.", "memo index 5 was never stored"),
    (b"\x80\x02\x8b\x00\x01\x00\x00" + b"\x01" * 256 + b".", "integer of 256 bytes"),
    (b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b".", "bytes are left"),
    (b"\x80\x02X\x05\x00\x00\x00\xff\xff\xff\xff\xff.", "not UTF-8"),
    (b"\x80\x02N", "without a STOP"),
    (b"\x80\x02N(.", "stack is empty"),
])
def test_refusals_name_the_opcode_and_byte(data, message):
    with pytest.raises(CheckpointError, match=message) as info:
        load(data)
    assert str(info.value).startswith("test.pkl: corrupt pickle at byte ")


def test_a_million_deep_tuple_key_is_an_error_not_a_crash():
    data = b"\x80\x02})" + b"\x85" * 10**6 + b"Ns."
    with pytest.raises(CheckpointError, match="dict key is a tuple"):
        load(data)


def test_floats_and_persistent_ids():
    assert math.isnan(load(pickle.dumps(float("nan"), protocol=2)))
    assert load(b"\x80\x02K\x07Q.", persistent_load=lambda pid: ("loaded", pid)) == \
        ("loaded", 7)
    with pytest.raises(CheckpointError, match="persistent id"):
        load(b"\x80\x02K\x07Q.")
