"""Write examples/data/sentiment_{train,dev}.tsv: a small, made-up sentiment data set.

Short movie-review sentences composed from templates: a subject ("the plot"), a
positive or negative phrase, sometimes negated ("is not boring" counts as positive,
"is not funny" as negative), sometimes with an opener or a "but" clause (the clause after
"but" decides the label). Labels "negative" / "positive", header "label<TAB>text",
lower-case with spaces around punctuation, like SST-2. Clear sentiment words make it
learnable by fine-tuning MiniLM for an epoch; dev shares no sentence with train and also
uses a few adjectives that train never shows.

    python tools/make_demo_data.py     # deterministic: rerunning rewrites the same files
"""

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "examples" / "data"
SEED = 1234
N_TRAIN, N_DEV = 400, 100

SUBJECTS = [
    "the movie", "this film", "the acting", "the plot", "the soundtrack", "the ending",
    "the cast", "the script", "the story", "the dialogue", "the camera work", "the pacing",
    "the lead performance", "this sequel", "the animation", "the director 's new film",
    "the first half", "the finale", "the humor", "this documentary", "the love story",
    "the visual design", "the villain", "the whole thing",
]
# Adjectives that can follow "is" / "is not".
POS_ADJ = ["wonderful", "brilliant", "charming", "delightful", "moving", "gripping",
           "funny", "beautiful", "clever", "fresh", "touching", "great", "excellent",
           "lovely", "smart", "thrilling"]
NEG_ADJ = ["boring", "dull", "awful", "clumsy", "tedious", "lifeless", "silly", "bland",
           "terrible", "forgettable", "messy", "predictable", "annoying", "weak",
           "painful", "ugly"]
# Held out of train: only dev uses them.
DEV_POS_ADJ = ["superb", "enchanting", "heartwarming"]
DEV_NEG_ADJ = ["dreadful", "tiresome", "insufferable"]
# Whole verb phrases (not negated).
POS_VP = ["kept me smiling", "works beautifully", "is a real triumph", "won me over",
          "is worth every minute", "left me in tears of joy", "is a pleasure to watch",
          "deserves every award", "made the whole audience laugh"]
NEG_VP = ["falls flat", "is a complete mess", "wasted my evening", "made me cringe",
          "is a waste of time", "drags on forever", "never comes together",
          "left me cold", "is an embarrassment"]
INTENSIFIERS = ["", "", "", "really ", "truly ", "very ", "quite ", "surprisingly "]
OPENERS = ["", "", "", "", "honestly , ", "overall , ", "in the end , ", "i think ",
           "to be fair , ", "sadly , ", "frankly , "]
ENDINGS = [" .", " .", " .", " !", " , no question .", " , from start to finish ."]


def pick(rng, items):
    return items[int(rng.integers(len(items)))]


def clause(rng, positive, pos_adj, neg_adj):
    """A 'subject + predicate' clause with the given sentiment."""
    subject = pick(rng, SUBJECTS)
    form = rng.random()
    if form < 0.6:  # plain adjective
        adj = pick(rng, pos_adj if positive else neg_adj)
        return f"{subject} is {pick(rng, INTENSIFIERS)}{adj}"
    if form < 0.75:  # negated adjective of the opposite sentiment
        adj = pick(rng, neg_adj if positive else pos_adj)
        at_all = " at all" if positive and rng.random() < 0.5 else ""
        return f"{subject} is not {adj}{at_all}"
    return f"{subject} {pick(rng, POS_VP if positive else NEG_VP)}"


def sentence(rng, positive, pos_adj, neg_adj):
    opener = pick(rng, OPENERS)
    if positive and opener == "sadly , ":
        opener = ""  # "sadly" would contradict a positive label
    if rng.random() < 0.08:  # "X but Y": the second clause decides
        first = clause(rng, not positive, pos_adj, neg_adj)
        second = clause(rng, positive, pos_adj, neg_adj)
        body = f"{first} , but {second}"
    else:
        body = clause(rng, positive, pos_adj, neg_adj)
    return f"{opener}{body}{pick(rng, ENDINGS)}"


def make_split(rng, n, pos_adj, neg_adj, taken):
    """n unique (label, text) rows, half positive, none of them in `taken`."""
    rows = []
    while len(rows) < n:
        want_positive = len(rows) % 2 == 0
        text = sentence(rng, want_positive, pos_adj, neg_adj)
        if text in taken:
            continue
        taken.add(text)
        rows.append((int(want_positive), text))
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def write_tsv(path, rows):
    names = ("negative", "positive")
    lines = ["label\ttext"] + [f"{names[label]}\t{text}" for label, text in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    n_pos = sum(label for label, _ in rows)
    print(f"wrote {path}: {len(rows)} rows ({n_pos} positive)")


def main():
    rng = np.random.default_rng(SEED)
    taken = set()
    train = make_split(rng, N_TRAIN, POS_ADJ, NEG_ADJ, taken)
    dev = make_split(rng, N_DEV, POS_ADJ + DEV_POS_ADJ, NEG_ADJ + DEV_NEG_ADJ, taken)
    OUT.mkdir(parents=True, exist_ok=True)
    write_tsv(OUT / "sentiment_train.tsv", train)
    write_tsv(OUT / "sentiment_dev.tsv", dev)


if __name__ == "__main__":
    main()
