"""Recipes: parsing, errors naming file/key/line, and every shipped recipe dry-runs."""

from pathlib import Path

import pytest

from robench.errors import RobenchError
from robench.pipeline.plan import build_plan, describe_plan
from robench.pipeline.recipe import hyper_variants
from robench.pipeline.recipe_toml import load_recipe

RECIPES = sorted((Path(__file__).parent.parent / "recipes").glob("*.toml"))

BASE = """\
name = "t"
[train]
datasets = ["digits"]
models = ["small-cnn"]
losses = ["ce", "gccs"]
modes = ["regular", "finetune"]
epochs = 2

[[attack]]
attack = "pgd"
eps = [0, 0.1]
"""


def write(tmp_path, text, name="r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"quickstart", "fashion-mnist-cpu", "mu-sweep", "paper-mnist", "paper-cifar10", "paper-cifar100"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_parses_and_dry_runs(path, tmp_path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem and recipe.scale
    plan = build_plan(recipe, tmp_path / "results", tmp_path / "runs")
    assert plan.runs
    text = describe_plan(plan)
    assert "to do" in text and recipe.name in text
    for run in plan.runs:
        if run.parent:  # every fine-tuning parent is trained by the same recipe, before it
            names = [r.name for r in plan.runs]
            assert names.index(run.parent) < names.index(run.name)
    assert not (tmp_path / "results").exists() and not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_plan_runs_and_sweeps(tmp_path):
    plan = build_plan(load_recipe(write(tmp_path, BASE)), tmp_path / "res", tmp_path / "runs")
    names = [r.name for r in plan.runs]
    assert names == ["digits-small-cnn-ce-regular-s0", "digits-small-cnn-gccs-regular-s0",
                     "digits-small-cnn-gccs-finetune-s0"]
    finetune = plan.runs[-1]
    assert finetune.config.init == str(tmp_path / "runs" / "t" / "digits-small-cnn-ce-regular-s0")
    assert finetune.config.epochs == 5  # the default finetune_epochs
    (sweep,) = plan.sweeps
    assert sweep.spec.eps_grid == (0.0, 0.1) and len(sweep.spec.checkpoints) == 3
    assert sweep.spec.out == str(tmp_path / "res" / "t" / "attacks.csv")


def test_hyper_grid_makes_one_run_per_value(tmp_path):
    text = BASE.replace('modes = ["regular", "finetune"]', 'modes = ["regular"]') + \
        "\n[train.loss_hyper.gccs]\nsigma = 1.0\n[train.hyper_grid.gccs]\nmu = [1, 10.5]\n"
    recipe = load_recipe(write(tmp_path, text))
    assert hyper_variants(recipe.train, "gccs") == [{"sigma": 1.0, "mu": 1}, {"sigma": 1.0, "mu": 10.5}]
    names = [r.name for r in build_plan(recipe, tmp_path, tmp_path).runs]
    assert "digits-small-cnn-gccs-mu1-regular-s0" in names and "digits-small-cnn-gccs-mu10.5-regular-s0" in names


def test_eps_range_string(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE.replace("eps = [0, 0.1]", 'eps = "0:0.1:3"')))
    assert recipe.attacks[0].eps == (0.0, 0.05, 0.1)


@pytest.mark.parametrize("old, new, expected", [
    ('epochs = 2', 'epochs = 2\nepoch = 3', "line 8: train.epoch: unknown key"),
    ('epochs = 2', 'epochs = 0', "line 7: train.epochs: must be at least 1"),
    ('epochs = 2', 'epochs = "2"', "line 7: train.epochs: expected int"),
    ('losses = ["ce", "gccs"]', 'losses = ["ce", "gcss"]', "line 5: train.losses: unknown loss 'gcss'"),
    ('eps = [0, 0.1]', 'eps = [0, -0.1]', "line 11: attack.eps: values must be finite and >= 0"),
    ('attack = "pgd"', 'attack = "pdg"', "line 10: attack.attack: unknown attack 'pdg'"),
    ('name = "t"', 'name = "t"\nfoo = 1', "line 2: foo: unknown key"),
    ('losses = ["ce", "gccs"]', 'losses = ["gccs"]', "train.modes: finetune continues the regular ce run"),
])
def test_bad_recipe_names_file_key_and_line(tmp_path, old, new, expected):
    path = write(tmp_path, BASE.replace(old, new))
    with pytest.raises(RobenchError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_second_attack_table_line(tmp_path):
    text = BASE + '\n[[attack]]\nattack = "tgsm"\neps = [0]\nsteps = 0\n'
    with pytest.raises(RobenchError, match=r"line 16: attack.steps: must be a positive integer"):
        load_recipe(write(tmp_path, text))


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(RobenchError, match="not valid TOML"):
        load_recipe(write(tmp_path, "name = \n"))
    with pytest.raises(RobenchError, match="no recipe at"):
        load_recipe(tmp_path / "missing.toml")


def test_audit_losses_and_modes_pick_the_audited_checkpoints(tmp_path):
    every = build_plan(load_recipe(write(tmp_path, BASE + "\n[audit]\n")), tmp_path / "res", tmp_path / "runs")
    assert len(every.audits) == 3
    text = BASE + '\n[audit]\nmodes = ["regular"]\nlosses = ["gccs", "ce"]\n'
    plan = build_plan(load_recipe(write(tmp_path, text)), tmp_path / "res", tmp_path / "runs")
    assert [a.run.name for a in plan.audits] == ["digits-small-cnn-ce-regular-s0", "digits-small-cnn-gccs-regular-s0"]
    text = BASE + '\n[audit]\nlosses = ["gccs"]\n'
    plan = build_plan(load_recipe(write(tmp_path, text)), tmp_path / "res", tmp_path / "runs")
    assert [a.run.name for a in plan.audits] == ["digits-small-cnn-gccs-regular-s0", "digits-small-cnn-gccs-finetune-s0"]


@pytest.mark.parametrize("line, expected", [
    ('losses = ["jacobian"]', "audit.losses: 'jacobian' is not among train.losses"),
    ('modes = ["adversarial"]', "audit.modes: 'adversarial' is not among train.modes"),
    ('modes = []', "audit.modes: expected a non-empty list of names"),
])
def test_bad_audit_subset(tmp_path, line, expected):
    with pytest.raises(RobenchError, match=expected):
        load_recipe(write(tmp_path, BASE + f"\n[audit]\n{line}\n"))
