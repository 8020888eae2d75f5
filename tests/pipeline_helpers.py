"""A tiny BERT and small data sets for the fine-tuning pipeline tests (tests/train/,
test_cli.py, test_predict.py); conftest.py turns them into fixtures."""
import signal

from minitune.train import Callback

WORDS = ("good great fine lovely bad awful dull poor the film plot was is not very a "
         "john smith lives in paris works at acme corp").split()


def save_tiny_bert(directory, dropout=0.1):
    """A random 2-layer BERT (H=16) with a 40-word vocabulary, in Hugging Face format."""
    from minitune.models import BertConfig, BertForSequenceClassification
    from minitune.tokenizer import Tokenizer
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    BertForSequenceClassification(config, seed=0).save_pretrained(
        directory, tokenizer=Tokenizer.from_vocab(vocab))
    return directory


def train_args(model_dir, files, out, **kw):
    """TrainArgs of a quick run on the tiny BERT and the sentiment files (conftest fixtures):
    2 epochs of 5 steps, checkpoints every 3 steps; ``kw`` overrides."""
    from minitune.train import TrainArgs
    base = dict(task="classify", model=str(model_dir), train=str(files / "train.tsv"),
                dev=str(files / "dev.tsv"), out=str(out), epochs=2, batch_size=8, lr=1e-3,
                max_len=16, progress=False, save_steps=3)
    base.update(kw)
    return TrainArgs(**base)


NER_SENTENCES = [["john B-PER", "smith I-PER", "lives O", "in O", "paris B-LOC", ". O"],
                 ["acme B-ORG", "corp I-ORG", "is O", "in O", "paris B-LOC"],
                 ["john B-PER", "works O", "at O", "acme B-ORG", "corp I-ORG", "in O",
                  "paris B-LOC", ". O"]]


class InterruptAt(Callback):
    """Ctrl-C during step ``step`` (what a user's keypress does)."""

    def __init__(self, step):
        self.step = step

    def on_gradients(self, trainer):
        if trainer.state["step"] + 1 == self.step:
            signal.raise_signal(signal.SIGINT)
