import json

import torch

from pydeblur.model import DeblurNet
from pydeblur.weights_io import load_model, save_weights
from tests.helpers import needs_data
from training import tune_consistency


def test_chooses_on_validation_and_writes_the_strength(tmp_path, capsys):
    photos = needs_data("photos")
    torch.manual_seed(0)
    source = save_weights(DeblurNet("tiny"), tmp_path / "tiny.safetensors", {"name": "tiny"})
    out = tmp_path / "tuned.safetensors"
    argv = ["--model", str(source), "--data", str(photos), "--crops", "1", "--grid", "1e4,1e6"]
    chosen = tune_consistency.main([*argv, "--write", str(out)])
    table = capsys.readouterr().out
    assert "| off |" in table and "| 10000 |" in table and "| 1e+06 |" in table
    assert chosen in (0.0, 1e4, 1e6)
    assert load_model(out).config.data_consistency == chosen
    card = json.loads(out.with_suffix(".json").read_text())
    assert set(card["data_consistency"]["mean_psnr_db"]) == {"0", "10000", "1e+06"}
    assert card["name"] == "tiny"
