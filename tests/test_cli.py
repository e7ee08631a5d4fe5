"""The llm-transfer command: a tiny train -> evaluate -> predict round trip, and every bad-input path."""

import errno
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


# a tiny run: 64 rows in batches of 16 (4 steps), 1 epoch, max length 32, 64 dev rows
TINY = ["train", "--quick", "--train-rows", "64", "--eval-rows", "64", "--epochs", "1", "--max-length", "32",
        "--batch-size", "16"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint from a tiny run: 64 rows, 1 epoch, max length 32, 64 dev rows."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main([*TINY, "--output", str(out)])
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


def test_train_freeze_word_embeddings_keeps_the_pretrained_table(tmp_path, capsys):
    from safetensors.torch import load_file

    from llm_transfer.models import load_classifier

    code, out, err = run([*TINY, "--freeze-word-embeddings", "--output", tmp_path / "run"], capsys)
    assert code == 0, err
    args = json.loads((tmp_path / "run" / "last" / "train_args.json").read_text())
    assert args["freeze_word_embeddings"] is True
    name = "bert.embeddings.word_embeddings.weight"
    saved = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    assert (saved[name] == load_classifier("bundled").state_dict()[name]).all()  # the pretrained table, untouched
    assert "--freeze-word-embeddings" in subprocess.run([sys.executable, "-m", "llm_transfer.cli", "train", "--help"],
                                                        capture_output=True, text=True).stdout


def test_evaluate_prints_one_json_object(trained, dev_rows, tmp_path, capsys):
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in dev_rows))
    code, out, err = run(["evaluate", "--checkpoint", trained / "best", "--data", tsv], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert set(res) == {"accuracy", "f1", "ece", "n"} and res["n"] == 40
    assert 0 <= res["accuracy"] <= 1 and 0 <= res["f1"] <= 1 and 0 <= res["ece"] <= 1
    bom = tmp_path / "dev-bom.tsv"  # as a spreadsheet saves it (bug: "header is '\\ufeffsentence\\tlabel'")
    bom.write_bytes(b"\xef\xbb\xbf" + tsv.read_bytes())
    code, out, err = run(["evaluate", "--checkpoint", trained / "best", "--data", bom], capsys)
    assert code == 0, err
    assert json.loads(out) == res


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
    f.write_text("\ufeffgreat fun\nterrible\nan okay movie\n", encoding="utf-8")  # a byte-order mark (Notepad)
    code, out, _ = run(["predict", "--checkpoint", ckpt, "--file", f, "--json"], capsys)
    assert code == 0 and [json.loads(x) for x in out.splitlines()] == rows


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
    if sub == "train":
        assert "--checkpoint-steps N" in out and "--checkpoint-minutes M" in out and "SIGTERM" in out


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


def test_train_checkpoint_steps_then_a_full_disk_then_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    """--checkpoint-steps reaches fine_tune; a full disk is one line and exit 1; after freeing space, it resumes."""
    from safetensors import SafetensorError

    from llm_transfer import checkpoints

    real, calls = checkpoints.save_file, []

    def disk_full_at_the_second(tensors, path, *args, **kwargs):  # last/'s optimizer state: step 2, then step 4
        calls.append(path)
        if len(calls) == 2:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, path, *args, **kwargs)

    out = tmp_path / "run"
    monkeypatch.setattr(checkpoints, "save_file", disk_full_at_the_second)
    code, stdout, err = run([*TINY, "--checkpoint-steps", "2", "--output", out], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 1 and stdout == "" and "Traceback" not in err, err
    assert last.startswith("llm-transfer: error: .../run/last: could not save (no space left on device); "), last
    assert "the previous .../run/last is intact" in last and "a save there needs about " in last
    assert last.endswith("run the same command again: it resumes from .../run/last (epoch 1/1, step 2/4).")
    assert json.loads((out / "last" / "training_state.json").read_text())["step"] == 2  # saved at step 2 of 4
    assert not list(out.glob(".last.tmp-*"))
    monkeypatch.undo()
    code, stdout, err = run([*TINY, "--checkpoint-steps", "2", "--output", out], capsys)
    assert code == 0 and "resumed from .../run/last at epoch 1/1, step 2/4: continuing with batch 3" in err, err
    assert json.loads(stdout)["train_rows"] == 64


def test_train_sent_sigterm_saves_and_exits_143(tmp_path):
    """A real process that gets SIGTERM mid-step (as from `timeout` or a scheduler): last/ saved, status 143."""
    out = tmp_path / "run"
    script = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"  # as a process normally starts (pytest may ignore it)
        "from llm_transfer import checkpoints, cli\n"
        "checkpoints.set_event_hook(lambda e: os.kill(os.getpid(), signal.SIGTERM) if e == 'backward 1.2' else None)\n"
        f"sys.exit(cli.main({[*TINY, '--output', str(out)]!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 143, done.stderr  # was: -15, killed mid-step with nothing saved
    assert lines[-1] == "llm-transfer: stopped by SIGTERM" and "Traceback" not in done.stderr
    assert lines[-2].startswith("stopped by SIGTERM at epoch 1/1, step 2/4: saved a resumable checkpoint in ")
    assert json.loads((out / "last" / "training_state.json").read_text())["step"] == 2


def test_train_into_an_unwritable_folder_is_one_line(tmp_path, capsys, monkeypatch):
    """Bug: a raw PermissionError traceback on .run.lock. Root ignores chmod, so the refusal is patched in."""
    from llm_transfer import checkpoints

    def denied(folder):
        raise PermissionError(errno.EACCES, "Permission denied", str(folder.with_name(f".{folder.name}.lock")))

    monkeypatch.setattr(checkpoints, "_lock_file", denied)
    code, stdout, err = run([*TINY, "--output", tmp_path / "run"], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 1 and stdout == "" and "Traceback" not in err
    assert last.startswith("llm-transfer: error: ") and "(permission denied); nothing was written; make that " \
        "folder writable (or pass another output folder)" in last, last
    monkeypatch.undo()
    (tmp_path / "a-file").write_text("")
    code, _, err = run([*TINY, "--output", tmp_path / "a-file" / "run"], capsys)
    assert code == 1 and "a-file is a file, not a folder" in err.strip().splitlines()[-1] and "Traceback" not in err
