"""`make demo`: fine-tune the embedded MiniLM checkpoint on a small sentiment sample, evaluate it,
and label a few new sentences — all on the CPU, in a couple of minutes.

The sample (examples/data/sentiment_*.tsv, label<TAB>text) is written by tools/make_demo_data.py.
The same run from the shell:

    minitune train --task classify --model all-MiniLM-L6-v2 \\
        --train examples/data/sentiment_train.tsv --dev examples/data/sentiment_dev.tsv \\
        --epochs 2 --batch-size 16 --lr 1e-4 --out runs/demo --overwrite
    minitune predict --model runs/demo "What a wonderful film"
"""
import json
import time
from pathlib import Path

from minitune.cli import _load_finetuned
from minitune.predict import predict_texts
from minitune.train import TrainArgs, train

HERE = Path(__file__).resolve().parent


def main():
    t0 = time.perf_counter()
    args = TrainArgs(task="classify", model="all-MiniLM-L6-v2",
                     train=str(HERE / "data" / "sentiment_train.tsv"),
                     dev=str(HERE / "data" / "sentiment_dev.tsv"),
                     out="runs/demo", epochs=2, batch_size=16, lr=1e-4, max_len=64,
                     overwrite=True)
    result = train(args)
    print(f"\ndev accuracy after fine-tuning: {result['dev']['accuracy']:.3f} "
          f"({result['steps']} steps, {time.perf_counter() - t0:.0f} s)")

    _, model, tokenizer, path = _load_finetuned(result["out"])
    sentences = ["An absolute delight from start to finish.",
                 "The plot was dull and the acting was even worse.",
                 "I would happily watch it again.",
                 "A tedious, forgettable mess."]
    print(f"\npredictions of {path}:")
    for text, pred in zip(sentences, predict_texts(model, tokenizer, "classify", sentences)):
        label = {"0": "negative", "1": "positive"}.get(pred["label"], pred["label"])
        print(f"  {label:8s} {pred['probability']:.3f}  {text}")
    print(json.dumps({"dev": result["dev"], "steps": result["steps"]}))


if __name__ == "__main__":
    main()
