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


def test_the_diffusers_call_is_printed_unwrapped_and_literal_on_a_narrow_terminal():
    import io

    from rich.console import Console

    from diffsearch.cli.schedule import print_summary

    call = (
        'scheduler = DPMSolverMultistepScheduler.from_pretrained("/a/rather/long/path/to/the/model", '
        "subfolder='scheduler', solver_order=2)\nscheduler.set_timesteps(timesteps=[999, 832, 666, 499, 332, 166])"
    )
    results = {
        "options": {"model": "m", "nfe": 6, "objective": "teacher"},
        "held_out": {"images": 50, "seeds_from": 1000000, "reference": None},
        "rows": [],
        "best": {"search_value": 0.01},
        "trials": 3,
        "search_seconds": 6.0,
        "schedule_file": "s.json",
        "call": call,
        "figure": "f.png",
        "results_file": "r.json",
        "storage": "sqlite:///x.db",
        "study": "s",
    }
    out = io.StringIO()
    print_summary(results, Console(file=out, width=40, color_system=None))
    printed = out.getvalue().splitlines()
    for line in call.splitlines():  # every line of code whole, brackets kept
        assert line in printed
