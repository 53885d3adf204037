"""``diffsearch prompt`` end to end on the tiny models, and its one-line errors."""

import json

import optuna
import pytest

from diffsearch.cli.main import main

TINY = ["--model", "tiny", "--clip", "tiny", "--steps", "8", "--lexicon-cache", None]


def tiny(tmp_path):
    return [str(a) if a is not None else str(tmp_path / "lexicon.json") for a in TINY]


@pytest.mark.slow
def test_enhance_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "prompt",
        "a happy old man reading a book",
        "--space",
        "antonym+library",
        "--searcher",
        "gpo+es",
        "--budget",
        "8",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--json",
        *tiny(tmp_path),
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "results.json").read_text())
    assert printed["prompts"] == saved["prompts"]
    record = saved["prompts"][0]
    assert record["best"]["loss"] <= record["user_input"]["loss"]
    assert record["best"]["positive"] == "a happy old man reading a book"
    assert record["spent_generations"] <= 8 + 1e-9 and record["gradient_steps"]
    assert (out / "before_after.png").stat().st_size > 5_000
    study = optuna.load_study(study_name=saved["study"], storage=f"sqlite:///{out}/study.db")
    assert len(study.trials) == record["evaluations"]
    best = study.best_trial
    assert (
        best.value == pytest.approx(record["best"]["value"])
        and best.user_attrs["negative"] == record["best"]["negative"]
    )
    assert study.user_attrs["job"] == "prompt" and study.user_attrs["model"] == "tiny"
    # the same command again resumes: nothing new is evaluated
    assert main(argv) == 0
    assert len(optuna.load_study(study_name=saved["study"], storage=f"sqlite:///{out}/study.db").trials) == len(
        study.trials
    )
    # other settings would make the recorded losses meaningless for this study: refused
    assert main([*argv, "--steps", "5"]) == 2
    assert "steps=8" in capsys.readouterr().err


@pytest.mark.slow
def test_attack_keeps_the_meaning_and_prompt_sets(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\na happy old man reading a book\na quick dog running on a big beach\n")
    assert (
        main(
            [
                "prompt",
                "--prompts",
                str(prompts),
                "--task",
                "attack",
                "--space",
                "synonym",
                "--searcher",
                "random",
                "--budget",
                "2",
                "--steps",
                "4",
                "--out",
                str(tmp_path / "a"),
                *tiny(tmp_path),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "over 2 prompts" in text and "higher is better" in text
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["summary"]["prompts"] == 2 and saved["summary"]["user_input_loss"]["std"] >= 0
    for record in saved["prompts"]:
        sim = record["best"]["similarity"]
        assert record["best"]["loss"] >= record["user_input"]["loss"]
        assert sim is None or sim >= 0.9  # None: no candidate met the constraint, the input stays best


@pytest.mark.parametrize(
    "args,message",
    [
        (["   "], "prompt is empty"),
        (["word " * 80], "at most 75"),
        (["a happy man", "--space", "nonsense"], "unknown --space"),
        (["a happy man", "--task", "attack", "--space", "antonym"], "synonym"),
        (["a happy man", "--budget", "0"], "--budget"),
        (["a happy man", "--searcher", "tpe"], "unknown --searcher"),
        (["a happy man", "--model", "/nonexistent/sd"], "model_index.json"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    model_args = [a for a in tiny(tmp_path) if True]
    if "--model" in args:
        model_args = model_args[2:]
    assert main(["prompt", *args, "--out", str(tmp_path / "bad"), *model_args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


# ---- SDXL, SD3, FLUX: tiny pipelines saved with save_pretrained, passed as --model DIR --------------------


def _family_args(family_dirs, name, tmp_path, out="run"):
    extra = ["--size", "16", "--true-cfg", "3"] if name == "tiny-flux" else []
    return [
        "--model",
        family_dirs[name],
        "--clip",
        "tiny",
        "--steps",
        "3",
        "--lexicon-cache",
        str(tmp_path / "lexicon.json"),
        "--out",
        str(tmp_path / out),
        "--json",
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-sdxl", "tiny-sd3", "tiny-flux"])
def test_enhance_and_attack_on_each_family(family_dirs, name, tmp_path, capsys):
    args = _family_args(family_dirs, name, tmp_path)
    assert (
        main(
            [
                "prompt",
                "a happy old man reading a book",
                "--space",
                "antonym+library",
                "--searcher",
                "gpo",
                "--budget",
                "3",
                "--iterations",
                "1",
                *args,
            ]
        )
        == 0
    )  # half the budget pays one gradient step
    record = json.loads(capsys.readouterr().out)["prompts"][0]
    assert record["gradient_steps"] and record["best"]["loss"] <= record["user_input"]["loss"]
    assert (
        main(
            [
                "prompt",
                "a happy old man reading a book",
                "--task",
                "attack",
                "--space",
                "synonym",
                "--searcher",
                "random",
                "--budget",
                "2",
                *_family_args(family_dirs, name, tmp_path, "attack"),
            ]
        )
        == 0
    )
    record = json.loads(capsys.readouterr().out)["prompts"][0]
    assert record["best"]["loss"] >= record["user_input"]["loss"]


# every prompt searcher, enhance and attack, on each family: the job's own search (optimise_prompt) on models
# loaded once per family, studies in memory (the CLI's files and images are tested above)
SEARCHER_BUDGETS = {"random": 2, "evolution": 2, "gpo": 3, "gpo+es": 6}  # gpo(+es): room for one gradient step


@pytest.fixture(scope="module")
def family_models(family_dirs, tmp_path_factory):
    from diffsearch.jobs.prompt import Models, PromptOptions

    lexicon = tmp_path_factory.mktemp("lexicon") / "lexicon.json"
    loaded = {}

    def options(name, **kw):
        extra = {"size": 16, "true_cfg": 3.0} if name == "tiny-flux" else {}
        return PromptOptions(
            prompt="a happy old man reading a book",
            model=family_dirs[name],
            clip="tiny",
            steps=3,
            iterations=1,
            lexicon_cache=str(lexicon),
            out=str(lexicon.parent / "out"),
            **extra,
            **kw,
        ).resolved()

    def get(name):
        if name not in loaded:  # the attack's models (the sentence model too) serve the enhance search as well
            loaded[name] = Models(options(name, task="attack", space="synonym", searcher="random"))
        return loaded[name]

    return options, get


@pytest.mark.slow
@pytest.mark.parametrize("searcher", list(SEARCHER_BUDGETS))
@pytest.mark.parametrize("name", ["tiny-sdxl", "tiny-sd3", "tiny-flux"])
def test_every_searcher_enhances_and_attacks_on_each_family(family_models, name, searcher):
    from diffsearch.jobs.prompt import optimise_prompt

    options, get = family_models
    models, budget = get(name), SEARCHER_BUDGETS[searcher]
    for task, space in (("enhance", "antonym+library"), ("attack", "synonym")):
        o = options(name, task=task, space=space, searcher=searcher, budget=budget)
        storage = optuna.storages.InMemoryStorage()
        record, run = optimise_prompt(o, models, o.prompt, storage, "s")
        trials = optuna.load_study(study_name="s", storage=storage).trials
        assert len(trials) == record["evaluations"] == len(run.seen) > 1, (task, record)
        assert budget - 1.5 < record["spent_generations"] <= budget + 1e-9 or (
            task == "attack"
            and all(e.value is None for p, e in run.seen.items() if p != tuple(record["points"]["user"]))
        )  # every candidate too far: rejected
        assert bool(record["gradient_steps"]) == searcher.startswith("gpo"), (task, record["gradient_steps"])
        user, best = record["user_input"]["loss"], record["best"]["loss"]
        losses = [e.loss for e in run.seen.values() if e.loss is not None]
        if task == "enhance":
            assert best == min(losses) <= user and record["best"]["positive"] == o.prompt
        else:
            assert best == max(losses) >= user
            assert record["best"]["similarity"] is None or record["best"]["similarity"] >= 0.9


@pytest.mark.slow
def test_negative_prompt_spaces_refused_where_they_cannot_act(family_dirs, tmp_path, capsys):
    args = _family_args(family_dirs, "tiny-flux", tmp_path)
    args = args[: args.index("--true-cfg")] + args[args.index("--true-cfg") + 2 :]  # FLUX without true CFG
    assert main(["prompt", "a red boat", "--space", "library", "--budget", "2", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--true-cfg" in err and "--space synonym" in err
    turbo = _family_args(family_dirs, "tiny-sdxl", tmp_path) + ["--guidance", "0"]  # SDXL-Turbo's setting
    assert main(["prompt", "a red boat", "--space", "antonym", "--budget", "2", *turbo]) == 2
    assert "turns classifier-free guidance off" in capsys.readouterr().err


def test_unserved_pipeline_exits_2(tmp_path, capsys):
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionUpscalePipeline"}))
    assert (
        main(
            [
                "prompt",
                "a red boat",
                "--model",
                str(tmp_path / "up"),
                "--clip",
                "tiny",
                "--out",
                str(tmp_path / "run"),
                "--lexicon-cache",
                str(tmp_path / "lex.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "StableDiffusionUpscalePipeline is not served" in err


@pytest.mark.parametrize("name,extra", [("tiny-flux", []), ("tiny-sdxl", ["--guidance", "0"])])
def test_space_refusal_comes_before_missing_clip_weights(family_dirs, tmp_path, capsys, name, extra):
    # the model/space mismatch needs no weights to tell: it is said first, not the CLIP weights that are missing
    common = [
        "--clip",
        f"ViT-B-32:{tmp_path / 'missing.pt'}",
        "--out",
        str(tmp_path / "run"),
        "--lexicon-cache",
        str(tmp_path / "lexicon.json"),
        *extra,
    ]
    for model in (name, family_dirs[name]):  # a built-in name, and a pipeline saved with save_pretrained
        assert main(["prompt", "a red boat", "--space", "antonym", "--model", model, *common]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("diffsearch: error: --space antonym searches a negative")
    assert main(["prompt", "a red boat", "--space", "synonym", "--model", name, *common]) == 2  # a space it serves
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot load CLIP" in err
