"""The Chinese recipes through the CLI, on small files and the tiny random Chinese checkpoint:
header-less ChnSentiCorp-style TSV for classify, CLUENER span JSON for NER (scored on
character spans, overlaps reported). examples/chinese.sh runs the same on the shared files."""
import json

from paths import FIXTURES

from minitune import cli

CHINESE_BERT = str(FIXTURES / "tiny_chinese_bert")
REVIEWS = ["房间很干净，服务也很周到。\tpositive", "太差了，再也不会来了。\tnegative",
           "早餐丰富，位置方便。\tpositive", "隔音很差，一晚没睡好。\tnegative"] * 4
CLUENER = [
    {"text": "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。",
     "label": {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}}},
    {"text": "《招商银行：投资永隆银行浮亏》", "label": {
        "book": {"《招商银行：投资永隆银行浮亏》": [[0, 14]]},
        "company": {"招商银行": [[1, 4]], "永隆银行": [[8, 11]]}}},
    {"text": "生生不息CSOL生化狂潮让你填弹狂扫", "label": {"game": {"CSOL生化狂潮": [[4, 11]]}}},
]


def last_json(text):
    return json.loads(text.strip().splitlines()[-1])


def train_args(task, train, dev, out):
    return ["train", "--task", task, "--model", CHINESE_BERT, "--train", str(train),
            "--dev", str(dev), "--max-steps", "3", "--batch-size", "4", "--lr", "1e-3",
            "--max-len", "64", "--out", str(out), "--no-progress"]


def test_chnsenticorp_style_headerless_tsv(tmp_path, capsys):
    data = tmp_path / "train.tsv"
    data.write_text("\n".join(REVIEWS) + "\n", encoding="utf-8")
    assert cli.main(train_args("classify", data, data, tmp_path / "run")) == 0
    assert last_json(capsys.readouterr().out)["dev"]["accuracy"] >= 0.0
    assert cli.main(["eval", "--model", str(tmp_path / "run"), "--data", str(data)]) == 0
    assert "accuracy" in last_json(capsys.readouterr().out)


def test_cluener_json_trains_and_scores_characters(tmp_path, capsys):
    data = tmp_path / "train.json"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in CLUENER),
                    encoding="utf-8")
    assert cli.main(train_args("ner", data, data, tmp_path / "run")) == 0
    out, err = capsys.readouterr()
    assert "train.json:2: overlapping span company [1, 5) '招商银行' left out" in err
    assert set(last_json(out)["dev"]) == {"precision", "recall", "f1", "token_accuracy"}
    assert cli.main(["eval", "--model", str(tmp_path / "run"), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "f1" in last_json(out) and "name" in out  # the per-type report
