"""`make demo`: fine-tune the embedded MiniLM checkpoint on a small sentiment sample, evaluate it,
label a few new sentences, and draw the run's training curves and one attention map — all on
the CPU, in a couple of minutes.

The sample (examples/data/sentiment_*.tsv, label<TAB>text, labels negative/positive) is written
by tools/make_demo_data.py. The same run from the shell:

    minitune train --task classify --model all-MiniLM-L6-v2 \\
        --train examples/data/sentiment_train.tsv --dev examples/data/sentiment_dev.tsv \\
        --epochs 2 --batch-size 16 --lr 1e-4 --max-len 64 --out runs/demo --overwrite
    minitune predict --model runs/demo "What a wonderful film"
    minitune plot runs/demo
    minitune attention --model runs/demo "An absolute delight from start to finish." \\
        --layer 2 --head 8 --out runs/demo/attention.png
"""
import json
import time
from pathlib import Path

from minitune.train import TrainArgs, Trainer
from minitune.viz.attention import attention_probabilities, plot_attention

DATA = Path(__file__).resolve().parent / "data"


def main():
    t0 = time.perf_counter()
    trainer = Trainer(TrainArgs(task="classify", model="all-MiniLM-L6-v2",
                                train=str(DATA / "sentiment_train.tsv"),
                                dev=str(DATA / "sentiment_dev.tsv"), out="runs/demo", epochs=2,
                                batch_size=16, lr=1e-4, max_len=64, overwrite=True))
    result = trainer.fit()
    print(f"\ndev accuracy after fine-tuning: {result['dev']['accuracy']:.3f} "
          f"({result['steps']} steps, {time.perf_counter() - t0:.0f} s)")

    sentences = ["An absolute delight from start to finish.",
                 "The plot was dull and the acting was even worse.",
                 "I would happily watch it again.",
                 "A tedious, forgettable mess."]
    print("\npredictions of the fine-tuned model:")
    for text, pred in zip(sentences, trainer.predict(sentences)):
        print(f"  {pred['label']:8s} {pred['probability']:.3f}  {text}")
    print(json.dumps({"dev": result["dev"], "steps": result["steps"]}))

    curves = Path(result["out"]) / "curves.png"          # drawn by fit() at the end
    tokens, probs = attention_probabilities(trainer.model, trainer.tokenizer, sentences[0])
    attention = plot_attention(tokens, probs, Path(result["out"]) / "attention.png",
                               layer=2, head=8)
    print(f"\ntraining curves: {curves}\nattention map (layer 2, head 8): {attention}")


if __name__ == "__main__":
    main()
