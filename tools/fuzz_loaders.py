"""Mutation fuzzing of every loader: thousands of damaged files per format, each loaded
in a child process with a memory limit, outcomes counted by exception class.

    .venv/bin/python tools/fuzz_loaders.py --per-format 10000 --out fuzz-out

Formats: safetensors, zip / legacy / tar ``.bin``, config.json (loaded with
BertForSequenceClassification.from_pretrained), tokenizer files (tokenizer.json,
vocab.txt, tokenizer_config.json) and sharded checkpoints (index + shards). Each case
takes a valid seed file and applies 1-4 mutations: bit flips, "interesting" bytes and
integers (0, -1, 2**31, 2**63, ...) written over the data, insertions, deletions,
duplications, truncation, splices from other seeds; JSON files also get structural
mutations (a value replaced by another type, a huge number, deep nesting); for zip and
tar the mutation hits the pickle or storage member, re-archived so it passes the CRC.

The promise checked (docs/security.md): every load returns or raises a CheckpointError;
no crash, no other exception, no load over --timeout seconds, none over --mem-limit-gib
(RLIMIT_AS in the child). Failing inputs are copied to --out with a JSON report. The
exit status is 1 if any case broke the promise.
"""

import argparse
import collections
import io
import json
import random
import shutil
import struct
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "io")]
import hostile  # noqa: E402
import torch_writer as tw  # noqa: E402

from minitune import Tokenizer  # noqa: E402
from minitune.io import write_safetensors  # noqa: E402
from minitune.io.limits import MAX_PICKLE_BYTES  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
FORMATS = ("safetensors", "zip", "legacy", "tar", "config", "tokenizer", "sharded")
INTERESTING_INTS = [0, 1, -1, 2**7, 2**8 - 1, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1,
                    2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]


# --- seeds: small valid files of each format ------------------------------------------------

def sample_tensors():
    rng = np.random.default_rng(0)
    return {"a": rng.standard_normal((3, 4)).astype(np.float32),
            "b": np.arange(5, dtype=np.int64), "c": np.array(1.5, np.float32),
            "d": np.zeros((0, 2), np.float32), "e": np.ones(3, np.float16)}


def make_seeds(root):
    """Valid seed files (or directories) per format: {format: [path, ...]}."""
    seeds = collections.defaultdict(list)
    write_safetensors(sample_tensors(), root / "small.safetensors")
    seeds["safetensors"] += [root / "small.safetensors", FIXTURES / "tiny_bert" /
                             "model.safetensors"]
    entries = tw.tensor_entries(sample_tensors())
    tw.write_zip(root / "small_zip.bin", tw.state_dict_pickle(entries), entries.storages)
    seeds["zip"] += [root / "small_zip.bin", FIXTURES / "tiny_bert_bin" / "pytorch_model.bin"]
    tw.write_legacy(root / "small_legacy.bin", tw.state_dict_pickle(entries, legacy=True),
                    entries.storages, tw.itemsizes(entries))
    seeds["legacy"] += [root / "small_legacy.bin",
                        FIXTURES / "tiny_bert_legacy" / "pytorch_model.bin"]
    tw.write_tar(root / "small_tar.bin", entries)
    seeds["tar"] += [root / "small_tar.bin"]
    seeds["config"] += [FIXTURES / "tiny_bert"]
    tok_dir = root / "tokenizer"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
        w for w in "the a of to and in hello world ##s ##ing".split()]
    Tokenizer.from_vocab(vocab).save_pretrained(tok_dir)
    seeds["tokenizer"] += [tok_dir]
    shard_dir = root / "sharded"
    shard_dir.mkdir()
    tensors = sample_tensors()
    write_safetensors({k: tensors[k] for k in "ab"}, shard_dir / "model-1.safetensors")
    write_safetensors({k: tensors[k] for k in "cde"}, shard_dir / "model-2.safetensors")
    index = {"metadata": {}, "weight_map": {k: "model-1.safetensors" if k in "ab" else
                                            "model-2.safetensors" for k in tensors}}
    (shard_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    seeds["sharded"] += [shard_dir]
    return seeds


# --- mutations ----------------------------------------------------------------------------

def mutate_bytes(data, rng, donors=()):
    """Apply 1-4 byte-level mutations to ``data``."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        n = len(data)
        at = rng.randrange(n) if n else 0
        choice = rng.randrange(9)
        if choice == 0 and n:
            data[at] ^= 1 << rng.randrange(8)
        elif choice == 1 and n:
            data[at] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, ord("."), ord("("), ord("[")])
        elif choice == 2:
            value = rng.choice(INTERESTING_INTS)
            size = rng.choice([1, 2, 4, 8])
            raw = (value % (1 << (8 * size))).to_bytes(size, "little")
            data[at:at + size] = raw
        elif choice == 3:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif choice == 4 and n:
            del data[at:at + rng.randint(1, 64)]
        elif choice == 5 and n:
            chunk = data[at:at + rng.randint(1, 64)]
            data[at:at] = chunk * rng.randint(1, 50)
        elif choice == 6:
            del data[rng.randrange(n + 1):]
        elif choice == 7 and donors:
            donor = rng.choice(donors)
            if donor:
                start = rng.randrange(len(donor))
                data[at:at] = donor[start:start + rng.randint(1, 256)]
        elif choice == 8:
            opcode = rng.choice(b"().NJKMXQRbcdehjlqrstu}])\x85\x86\x87\x88\x89\x8a\x8b"
                                b"\x8c\x8d\x8e\x93\x94\x95")
            data[at:at] = bytes([opcode]) + bytes(rng.randrange(256)
                                                  for _ in range(rng.randint(0, 8)))
    return bytes(data)


def random_json_value(rng, depth=0):
    pick = rng.randrange(12 if depth < 3 else 8)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice(INTERESTING_INTS + [-2**70, 10**30])
    if pick == 3:
        return rng.choice([0.0, -1.0, 1e308, float("nan"), float("inf"), 0.5])
    if pick == 4:
        return rng.choice(["", "gelu", "F32", "BF16", "absolute", "\ud800", "x" * 300, "0"])
    if pick == 5:
        return "[" * rng.randint(1, 5000) + "]" * rng.randint(0, 5000)  # marker for text
    if pick == 6:
        return rng.randint(-10, 10**6)
    if pick == 7:
        return "9" * rng.randint(1, 6000)
    if pick in (8, 9):
        return [random_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["0", "1", "dtype", "shape", "x", "weight_map", "content"]):
            random_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def mutate_json(text, rng):
    """Replace a random value of a JSON document (or the whole) by a random one."""
    try:
        doc = json.loads(text)
    except ValueError:
        return mutate_bytes(text.encode(), rng)
    paths = []
    stack = [((), doc)]
    while stack:
        path, node = stack.pop()
        paths.append(path)
        if isinstance(node, dict):
            stack.extend((path + (k,), v) for k, v in list(node.items())[:50])
        elif isinstance(node, list):
            stack.extend((path + (i,), v) for i, v in enumerate(node[:50]))
    path = rng.choice(paths)
    value = random_json_value(rng)
    raw_text = isinstance(value, str) and value[:1] == "[" or (
        isinstance(value, str) and value[:1] == "9")
    placeholder = "@@FUZZ@@"
    if not path:
        doc = placeholder if raw_text else value
    else:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = placeholder if raw_text else value
    out = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
    if raw_text:
        out = out.replace(json.dumps(placeholder), value)
    return out.encode("utf-8", "surrogatepass")


def rewrite_zip(src, dst, rng, donors):
    """Mutate one member of a zip (re-archived, so CRCs match) or the raw archive."""
    if rng.random() < 0.3:
        dst.write_bytes(mutate_bytes(src.read_bytes(), rng, donors))
        return
    with zipfile.ZipFile(src) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    victim = rng.randrange(len(members))
    pickles = [i for i, (info, _) in enumerate(members) if info.filename.endswith("data.pkl")]
    if pickles and rng.random() < 0.6:
        victim = pickles[0]
    compression = zipfile.ZIP_DEFLATED if rng.random() < 0.2 else zipfile.ZIP_STORED
    with zipfile.ZipFile(dst, "w", compression=compression) as zf:
        for i, (info, data) in enumerate(members):
            zf.writestr(info.filename, mutate_bytes(data, rng, donors) if i == victim else data)


def rewrite_tar(src, dst, rng, donors):
    if rng.random() < 0.3:
        dst.write_bytes(mutate_bytes(src.read_bytes(), rng, donors))
        return
    with tarfile.open(src) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    victim = rng.randrange(len(members))
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tar:
        for i, (name, data) in enumerate(members):
            data = mutate_bytes(data, rng, donors) if i == victim else data
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_case(fmt, seeds, rng, work, donors):
    """Write one mutated case under ``work``; return (loader kind, path)."""
    seed = rng.choice(seeds[fmt])
    if fmt == "safetensors":
        path = work / "case.safetensors"
        data = seed.read_bytes()
        if rng.random() < 0.4:  # a structural change to the header
            (length,) = struct.unpack("<Q", data[:8])
            header = mutate_json(data[8:8 + length].decode(), rng)
            data = struct.pack("<Q", len(header)) + header + data[8 + length:]
        path.write_bytes(mutate_bytes(data, rng, donors) if rng.random() < 0.7 else data)
        return "safetensors", path
    if fmt in ("zip", "legacy", "tar"):
        path = work / "case.bin"
        if fmt == "zip":
            rewrite_zip(seed, path, rng, donors)
        elif fmt == "tar":
            rewrite_tar(seed, path, rng, donors)
        else:
            path.write_bytes(mutate_bytes(seed.read_bytes(), rng, donors))
        return "bin", path
    case_dir = work / "case"
    shutil.rmtree(case_dir, ignore_errors=True)
    shutil.copytree(seed, case_dir)
    if fmt == "config":
        target = case_dir / "config.json"
        kind = "model"
    elif fmt == "tokenizer":
        target = case_dir / rng.choice(["tokenizer.json", "vocab.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"])
        if rng.random() < 0.3:
            (case_dir / "tokenizer.json").unlink()  # load from vocab.txt instead
        kind = "tokenizer"
    else:
        target = case_dir / rng.choice(["model.safetensors.index.json", "model-1.safetensors",
                                        "model-2.safetensors"])
        kind = "checkpoint"
    if not target.exists():
        target = case_dir / "vocab.txt" if kind == "tokenizer" else target
    data = target.read_bytes()
    if target.suffix == ".json" and rng.random() < 0.6:
        data = mutate_json(data.decode("utf-8", "replace"), rng)
    else:
        data = mutate_bytes(data, rng, donors)
    target.write_bytes(data)
    return kind, case_dir


# --- worst cases: ~10 MB files built to cost the most ----------------------------------------

def worst_cases(root):
    """Files just under 10 MB built to maximize a loader's time or memory: [(name, kind, path)]."""
    size = 10_000_000 - 4096
    cases = []

    def zip_pickle(name, body):
        """A pickle just under MAX_PICKLE_BYTES (a larger one is refused unread)."""
        path = root / f"{name}.bin"
        tw.write_zip(path, b"\x80\x02" + body[: MAX_PICKLE_BYTES - 16] + b".", {})
        cases.append((name, "bin", path))

    zip_pickle("pickle_empty_lists_memoized", b"]\x94" * (size // 2))
    zip_pickle("pickle_tuple1_chain", b")" + b"\x85" * size)
    zip_pickle("pickle_dicts_appended", b"]" + b"}a" * (size // 2))
    zip_pickle("pickle_deep_tuple_key", b"})" + b"\x85" * (MAX_PICKLE_BYTES - 24) + b"Ns")
    zip_pickle("pickle_marks", b"(" * size)
    header = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
              for i in range(size // 56)}
    body = json.dumps(header, separators=(",", ":")).encode()[:size]
    body = body[: body.rindex(b"},") + 1] + b"}"
    path = root / "safetensors_many_empty_tensors.safetensors"
    path.write_bytes(struct.pack("<Q", len(body)) + body)
    cases.append(("safetensors_many_empty_tensors", "safetensors", path))
    model = root / "config_many_labels"
    shutil.copytree(FIXTURES / "tiny_bert", model)
    config = json.loads((model / "config.json").read_text())
    config["id2label"] = {str(i): f"L{i}" for i in range(100_000)}
    (model / "config.json").write_text(json.dumps(config))
    cases.append(("config_100000_labels", "model", model))
    model = root / "config_empty_lists"
    shutil.copytree(FIXTURES / "tiny_bert", model)
    (model / "config.json").write_text('{"x": [' + "[]," * (size // 3 - 10) + "[]]}")
    cases.append(("config_nested_empty_lists", "model", model))
    tok = root / "tokenizer_big_vocab"
    tok.mkdir()
    words = [f"w{i}" for i in range(size // 10)]
    (tok / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + words))
    cases.append(("vocab_txt_1M_tokens", "tokenizer", tok))
    return cases


def run_worst_cases(args):
    """Each worst case in a fresh child: its time and peak memory above the child's start."""
    work = Path(tempfile.mkdtemp(prefix="minitune-worst-"))
    broken = 0
    print(f"{'case':34} {'MB':>5} {'outcome':>28} {'seconds':>8} {'peak MiB':>9}")
    for name, kind, path in worst_cases(work):
        megabytes = sum(p.stat().st_size for p in ([path] if path.is_file()
                                                   else path.iterdir())) / 1e6
        with hostile.Child(mem_limit=int(args.mem_limit_gib * 2**30),
                           timeout=args.timeout) as child:
            result = child.run(kind, path)
            growth = result["max_rss_mib"] - child.baseline_rss_mib
        broken += result["outcome"] not in ("ok", "documented")
        print(f"{name:34} {megabytes:5.1f} {result['outcome'] + ':' + result['error']:>28} "
              f"{result['seconds']:8.2f} {growth:9.0f}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if broken else 0


# --- the run ------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-format", type=int, default=1000)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mem-limit-gib", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"))
    parser.add_argument("--worst", action="store_true",
                        help="instead: time and memory of ~10 MB files built to cost the most")
    args = parser.parse_args(argv)
    if args.worst:
        return run_worst_cases(args)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="minitune-fuzz-"))
    seeds = make_seeds(work)
    donors = [p.read_bytes()[:4096] for paths in seeds.values() for p in paths if p.is_file()]
    report = {}
    broken = 0
    with hostile.Child(mem_limit=int(args.mem_limit_gib * 2**30), timeout=args.timeout) as child:
        for fmt in args.formats:
            rng = random.Random(f"{args.seed}-{fmt}")
            counts = collections.Counter()
            slowest, peak, start = 0.0, 0.0, time.perf_counter()
            for i in range(args.per_format):
                kind, path = make_case(fmt, seeds, rng, work, donors)
                result = child.run(kind, path)
                label = result["outcome"] + (f":{result['error']}" if result["error"] else "")
                counts[label] += 1
                slowest = max(slowest, result["seconds"])
                peak = max(peak, result["max_rss_mib"])
                if result["outcome"] not in ("ok", "documented"):
                    broken += 1
                    keep = args.out / f"{fmt}-{i}"
                    shutil.rmtree(keep, ignore_errors=True)
                    (shutil.copytree if path.is_dir() else shutil.copy)(path, keep)
                    print(f"  BROKEN {fmt} #{i}: {result['outcome']} {result['error']} "
                          f"{result['detail'][:200]} -> {keep}", flush=True)
            report[fmt] = {"cases": args.per_format, "outcomes": dict(counts.most_common()),
                           "slowest_s": round(slowest, 3), "peak_rss_mib": round(peak),
                           "wall_s": round(time.perf_counter() - start, 1)}
            print(f"{fmt}: {json.dumps(report[fmt])}", flush=True)
        report["child_baseline_mib"] = child.baseline_mib
    report["command"] = " ".join(sys.argv)
    report["broken"] = broken
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"{broken} cases broke the promise; report in {args.out / 'report.json'}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
