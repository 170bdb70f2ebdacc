import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from cbirlib import cli, results


def test_cli_data_info_folder(image_folder, capsys):
    assert cli.main(["data", "info", "--data", str(image_folder)]) == 0
    out = capsys.readouterr().out
    assert "classes: a, b, c" in out and "images: 18" in out


def test_cli_data_info_json(image_folder, capsys):
    assert cli.main(["data", "info", "--data", str(image_folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == ["a", "b", "c"]
    assert sum(sum(v.values()) for v in info["counts"].values()) == 18


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli.main(["data", "info", "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["weights", "prepare", "resnet"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_cli_unknown_subcommand():
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])


def test_cli_default_info(default_dataset, capsys):
    assert cli.main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "honest limits" in out and "invesalius-examples" in out


def test_write_table_and_provenance(tmp_path):
    t = pd.DataFrame({"label": ["a", "a"], "images": [10, 12], "source": ["paper", "ours"]})
    csv = results.write_table(t, "nb", "counts", {"seed": 0}, results_dir=tmp_path, dataset={"name": "x"})
    assert pd.read_csv(csv).equals(t)
    prov = json.loads((tmp_path / "nb" / "provenance.json").read_text())
    assert prov["tables"]["counts"]["parameters"] == {"seed": 0}
    assert prov["tables"]["counts"]["dataset"] == {"name": "x"}
    assert "torch" in prov["environment"]["packages"]
    wide = results.side_by_side(t, ["label"], "images")
    assert list(wide.columns) == ["paper", "ours"] and wide.loc["a", "ours"] == 12


def test_a_table_of_a_run_without_a_model_records_the_cpu_without_importing_torch(tmp_path):
    """A chapter that uses no network (the cipher, the attacks, the scorecard) writes its tables
    without loading torch (2-3 s of CPU per run), and its provenance still names the device and
    the threads it was given; a run that loaded torch reports torch's own thread count."""
    code = ("import json, sys, pandas as pd\n"
            "from cbirlib import results\n"
            f"results.write_table(pd.DataFrame({{'source': ['ours']}}), 'nb', 't', {{}}, results_dir={str(tmp_path)!r})\n"
            "print(json.dumps(['torch' in sys.modules, "
            f"json.load(open({str(tmp_path / 'nb' / 'provenance.json')!r}))['environment']['device']]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=os.environ | {"CBIR_THREADS": "3"}).stdout
    torch_loaded, device = json.loads(out)
    assert not torch_loaded
    assert device["device"] == "cpu" and device["threads"] == 3 and device["name"]

    import torch

    from cbirlib import provenance

    record = provenance.device_record()
    assert record["device"] in ("cpu", "cuda")
    if record["device"] == "cpu":
        assert record["threads"] == torch.get_num_threads()


def test_write_table_needs_source(tmp_path):
    with pytest.raises(ValueError, match="source"):
        results.write_table(pd.DataFrame({"x": [1]}), "nb", "t", {}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="paper or ours"):
        results.write_table(pd.DataFrame({"source": ["mine"]}), "nb", "t", {}, results_dir=tmp_path)
