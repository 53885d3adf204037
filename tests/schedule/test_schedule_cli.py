"""Bad input to ``diffsearch schedule``: one line on stderr, exit 2, nothing written."""

import pytest

from diffsearch.cli.main import main


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nfe", "0"], "--nfe must be at least 1"),
        (["--nfe", "1001"], "--nfe must be between 1 and the model's 1000 training timesteps"),
        (["--solver", "DDIMScheduler"], "DDIMScheduler cannot run a custom schedule"),
        (["--solver", "heun"], "unknown --solver 'heun'"),
        (["--searcher", "nope"], "unknown --searcher 'nope'; known: evolution, tpe, gp, gradient, random"),
        (["--objective", "fid"], "--objective fid needs --reference"),
        (["--fid-images", "10"], "--fid-images must be at least 50"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["schedule", "--model", "tiny", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_reference_folder_with_too_few_images(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "real"
    folder.mkdir()
    for i in range(30):
        Image.new("L", (8, 8), i).save(folder / f"{i}.png")
    out = tmp_path / "run"
    assert main(["schedule", "--model", "tiny", "--reference", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has 6 held-out images; FID on 200 images needs at least 200" in err and err.count("\n") == 1, err
    assert not out.exists()


def test_help_names_the_works(capsys):
    with pytest.raises(SystemExit):
        main(["schedule", "--help"])
    text = capsys.readouterr().out
    assert "AutoDiffusion" in text and "timesteps=" in text and "Align Your Steps" in text
