"""Make the folder the GPU check's fine-tuning runs need (tools/gpu_check.sh, step 6).

A GPU machine may have no network and receive little with the working tree (64 MiB where
this project's GPU checks run): the data (SST-2, CoNLL-2003: 6 MB) and all-MiniLM-L6-v2 with
its weights stored as float16 (45 MB instead of 91). minitune and transformers read them back
as float32: the pretrained weights rounded to 11 significant bits, a difference far below
what fine-tuning moves (compare GPU scores with a CPU run on the same folder, or with the
CPU results in docs/results.md knowing this).

    python tools/gpu_payload.py [--out gpu_payload] [--data ../shared/data]

writes OUT/minilm/ (config, tokenizer, float16 model.safetensors), OUT/sst2/ and
OUT/conll2003/. gpu_payload/ is ignored by git: hand it to the GPU machine with the working
tree; tools/gpu_check.sh looks for it in $MINITUNE_GPU_PAYLOAD (default ./gpu_payload).
"""
import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from minitune.io import read_safetensors, resolve_model_dir, write_safetensors

TOKENIZER_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
DATA = {"sst2": ("train.tsv", "dev.tsv"), "conll2003": ("train.txt", "dev.txt")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_payload")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    args = ap.parse_args()
    out, data = Path(args.out), Path(args.data)
    missing = [f"{data / d / f}" for d, files in DATA.items() for f in files
               if not (data / d / f).is_file()]
    if missing:
        print(f"gpu_payload: missing data files: {', '.join(missing)} (--data DIR)",
              file=sys.stderr)
        return 2
    model_dir = Path(resolve_model_dir(args.model))
    (out / "minilm").mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out / "minilm" / name)
    weights = read_safetensors(model_dir / "model.safetensors")
    half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in weights.items()}
    write_safetensors(half, out / "minilm" / "model.safetensors")
    for d, files in DATA.items():
        (out / d).mkdir(exist_ok=True)
        for f in files:
            shutil.copyfile(data / d / f, out / d / f)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB (model weights float16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
