"""The llm-transfer command: a tiny train -> evaluate -> predict round trip, and every bad-input path."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm_transfer.cli import main
from llm_transfer.data import load_sst2
from llm_transfer.settings import get_settings


def run(argv, capsys) -> tuple[int, str, str]:
    """main(argv) in-process: (exit status, stdout, stderr); argparse's usage errors count as status 2."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def dev_rows():
    """Forty labelled dev sentences."""
    ds = load_sst2(get_settings().data)["validation"].select(range(40))
    return list(zip(ds["sentence"], ds["label"], strict=True))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint from a tiny run: 64 rows, 1 epoch, max length 32, 64 dev rows."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "--quick", "--train-rows", "64", "--eval-rows", "64", "--epochs", "1",
                 "--max-length", "32", "--batch-size", "16", "--output", str(out)])
    assert code == 0
    return out


def test_train_writes_checkpoints_and_prints_metrics(trained, capsys):
    assert all((trained / d / "checkpoint.json").is_file() for d in ("best", "last"))
    assert not [p.name for p in trained.iterdir() if p.name.startswith(".")]  # nothing half-written
    args = json.loads((trained / "best" / "train_args.json").read_text())
    assert (args["train_rows"], args["max_length"], args["epochs"]) == (64, 32, 1)
    # a rerun with the same arguments resumes (no epoch left) and prints the same final metrics as JSON
    code, out, _ = run(["train", "--quick", "--train-rows", "64", "--eval-rows", "64", "--epochs", "1",
                        "--max-length", "32", "--batch-size", "16", "--output", trained], capsys)
    assert code == 0
    res = json.loads(out)
    assert res["train_rows"] == 64 and res["eval_rows"] == 64 and 0 <= res["eval_accuracy"] <= 1
    saved = json.loads((trained / "best" / "metrics.json").read_text())["best"]
    assert res["eval_accuracy"] == saved["eval_accuracy"]


def test_train_refuses_other_settings_in_same_folder(trained, capsys):
    code, out, err = run(["train", "--quick", "--train-rows", "32", "--eval-rows", "64", "--epochs", "1",
                          "--max-length", "32", "--batch-size", "16", "--output", trained], capsys)
    assert code == 1 and out == ""
    last = err.strip().splitlines()[-1]  # progress lines come first on stderr; the error is the last line
    assert last.startswith("llm-transfer: error: ") and "--output" in last and "Traceback" not in err


def test_evaluate_prints_one_json_object(trained, dev_rows, tmp_path, capsys):
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in dev_rows))
    code, out, err = run(["evaluate", "--checkpoint", trained / "best", "--data", tsv], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert set(res) == {"accuracy", "f1", "ece", "n"} and res["n"] == 40
    assert 0 <= res["accuracy"] <= 1 and 0 <= res["f1"] <= 1 and 0 <= res["ece"] <= 1


def test_predict_args_file_and_json(trained, tmp_path, capsys):
    ckpt = trained / "best"
    code, out, _ = run(["predict", "--checkpoint", ckpt, "a wonderful , moving film", "dull and lifeless"],
                       capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1].endswith("\tdull and lifeless")
    label, p, _ = lines[0].split("\t")
    assert label in ("negative", "positive") and 0.5 <= float(p) <= 1
    f = tmp_path / "texts.txt"
    f.write_text("great fun\nterrible\nan okay movie\n")
    code, out, _ = run(["predict", "--checkpoint", ckpt, "--file", f, "--json"], capsys)
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == ["great fun", "terrible", "an okay movie"]
    assert all(r["label"] == ("positive" if r["p_positive"] >= 0.5 else "negative") for r in rows)


def test_console_script_subprocess(trained):
    """One real process through the installed console script (or python -m when it is not on PATH)."""
    exe = shutil.which("llm-transfer") or str(Path(sys.executable).with_name("llm-transfer"))
    cmd = [exe] if Path(exe).exists() else [sys.executable, "-m", "llm_transfer.cli"]
    ok = subprocess.run([*cmd, "predict", "--checkpoint", str(trained / "best"), "--json", "fine"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["text"] == "fine"


@pytest.mark.parametrize("sub", ["train", "evaluate", "predict"])
def test_help(sub, capsys):
    code, out, _ = run([sub, "--help"], capsys)
    assert code == 0 and "usage: llm-transfer " + sub in out


def test_bad_checkpoint_folders(trained, tmp_path, capsys):
    code, _, err = run(["predict", "--checkpoint", tmp_path / "missing", "hi"], capsys)
    assert code == 1 and "checkpoint folder not found" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text("{}")
    code, _, err = run(["predict", "--checkpoint", foreign, "hi"], capsys)
    assert code == 1 and "not a checkpoint written by llm-transfer" in err
    code, _, err = run(["predict", "--checkpoint", trained, "hi"], capsys)  # the run folder, not best/
    assert code == 1 and "did you mean" in err and str(trained / "best") in err
    broken = tmp_path / "broken"
    shutil.copytree(trained / "best", broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    code, _, err = run(["predict", "--checkpoint", broken, "hi"], capsys)
    assert code == 1 and "damaged" in err
    for e in (err,):
        assert e.startswith("llm-transfer: error: ") and e.count("\n") == 1 and "Traceback" not in e


def test_bad_data_files(trained, tmp_path, capsys):
    ckpt = trained / "best"
    cases = {
        "missing.tsv": (None, "file not found"),
        "header.tsv": ("text\tlabel\nfine\t1\n", "header"),
        "label.tsv": ("sentence\tlabel\nfine\t7\n", "line 2: label '7'"),
        "cols.tsv": ("sentence\tlabel\nfine\n", "line 2: 1 tab-separated columns"),
        "empty.tsv": ("sentence\tlabel\n", "no rows"),
    }
    for name, (content, msg) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        code, out, err = run(["evaluate", "--checkpoint", ckpt, "--data", path], capsys)
        assert code == 1 and out == "", name
        assert err.startswith("llm-transfer: error: ") and msg in err and err.count("\n") == 1, (name, err)


def test_bad_predict_inputs(trained, tmp_path, capsys):
    ckpt = trained / "best"
    code, _, err = run(["predict", "--checkpoint", ckpt], capsys)
    assert code == 1 and "no text to classify" in err
    code, _, err = run(["predict", "--checkpoint", ckpt, "  "], capsys)
    assert code == 1 and "text argument 1 is empty" in err
    blank = tmp_path / "blank.txt"
    blank.write_text("good\n\nbad\n")
    code, out, err = run(["predict", "--checkpoint", ckpt, "--file", blank], capsys)
    assert code == 1 and out == "" and "line 2: blank line" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = run(["predict", "--checkpoint", ckpt, "--file", empty], capsys)
    assert code == 1 and "no text to classify" in err
    code, _, err = run(["predict", "--checkpoint", ckpt, "--file", tmp_path / "nope.txt"], capsys)
    assert code == 1 and "cannot read" in err
    code, _, err = run(["predict", "--checkpoint", ckpt, "--file", blank, "extra"], capsys)
    assert code == 1 and "not both" in err


def test_usage_errors_exit_2(capsys):
    assert run([], capsys)[0] == 2
    code, _, err = run(["train", "--epochs", "0"], capsys)
    assert code == 2 and "is not >= 1" in err
    code, _, err = run(["train", "--quick", "--full"], capsys)
    assert code == 2 and "not allowed with" in err
    code, _, err = run(["evaluate", "--data", "x.tsv"], capsys)
    assert code == 2 and "--checkpoint" in err


def test_train_bad_data_folder(tmp_path, capsys):
    code, out, err = run(["train", "--data", tmp_path / "no-such-folder", "--output", tmp_path / "run"], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 1 and out == "" and "Traceback" not in err
    assert last.startswith("llm-transfer: error: ") and "SST-2 folder not found" in last
    assert not (tmp_path / "run").exists()  # nothing written


def test_train_uses_the_threads_setting(monkeypatch):
    """LLM_TRANSFER_THREADS must reach the CLI as it reaches the notebooks (bug: the CLI ignored it)."""
    from llm_transfer import cli, hardware

    seen = []

    class Stop(Exception):
        """Ends the run before any data or model is loaded."""

    def stop(threads):
        seen.append(threads)
        raise Stop

    monkeypatch.setenv("LLM_TRANSFER_THREADS", "1")
    monkeypatch.setattr(hardware, "set_threads", stop)
    with pytest.raises(Stop):
        cli.main(["train", "--quick"])
    assert seen == [1]
