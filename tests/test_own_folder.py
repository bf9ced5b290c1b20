"""docs/own-model.md, run as written: a model, a model config and an
experiment outside the repository; train, eval, predict and resume with trust=."""

from __future__ import annotations

import os
import re

import pytest
from conftest import ROOT, run_cli, run_main


@pytest.mark.slow
def test_the_documented_example_trains_evaluates_predicts_and_resumes(tmp_path, fake_data, monkeypatch):
    page = (ROOT / "docs" / "own-model.md").read_text()
    files = re.findall(r"\*\*`(my_lenet/[^`]+)`\*\*\n```\w+\n(.*?)```", page, re.S)
    assert [name for name, _ in files] == [
        "my_lenet/my_models.py",
        "my_lenet/model/my_cnn.yaml",
        "my_lenet/experiment/my_exp.yaml",
    ]
    for name, text in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    mine = tmp_path / "my_lenet"
    env = {**os.environ, "PYTHONPATH": f"{mine}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = tmp_path / "run"
    quick = ["trainer=cpu", "debug=limit", "data.verify_md5=false", "data.batch_size=16", f"data.data_dir={fake_data}"]
    out = run_cli("--config-dir", str(mine), "experiment=my_exp", *quick, f"hydra.run.dir={run}", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    ckpt = run / "checkpoints" / "last.ckpt"
    # training runs as a command; eval (refused, then trusted), predict and resume in this process, with the
    # user's folder on its path as PYTHONPATH puts it on theirs (test_errors.py runs eval as a command, and
    # test_resume.py resume with trust= of a user's class on PYTHONPATH)
    # trusted, in a shell without that PYTHONPATH: one sentence that says what to do, no traceback
    unfound = run_main("lenet_exp.eval", f"ckpt_path={ckpt}", "accelerator=cpu", "trust=my_models.SmallCNN")
    assert unfound.returncode == 1 and "Traceback" not in unfound.stderr and "Error getting" not in unfound.stderr
    assert unfound.stderr.strip().splitlines()[-1] == (
        "error: model.net._target_=my_models.SmallCNN cannot be imported: Python finds no module my_models here; put "
        "the folder that holds my_models on PYTHONPATH, or give a class with its module, spelled as Python imports it."
    )
    monkeypatch.syspath_prepend(str(mine))
    refused = run_main("lenet_exp.eval", f"ckpt_path={ckpt}", "accelerator=cpu")
    assert refused.returncode == 1 and "trust=my_models.SmallCNN" in refused.stderr
    trusted = "trust=my_models.SmallCNN"
    evaluated = run_main("lenet_exp.eval", f"ckpt_path={ckpt}", "accelerator=cpu", trusted)
    assert evaluated.returncode == 0 and "test acc" in evaluated.stdout, evaluated.stderr
    from PIL import Image

    Image.new("L", (40, 30), 200).save(tmp_path / "shoe.png")
    predicted = run_main("lenet_exp.predict", f"ckpt_path={ckpt}", f"images={tmp_path / 'shoe.png'}", trusted)
    assert predicted.returncode == 0 and "shoe.png:" in predicted.stdout, predicted.stderr
    (run / "metrics.json").unlink()  # as if it had been stopped before its final test
    resumed = run_main("lenet_exp.resume", str(run), trusted)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (run / "metrics.json").is_file()
