"""Evaluating the user's own model: a factory and its weights (safetensors or a state dict), imported as a run
directory or named on the command line, under L-inf and L2; clear errors; peers agree on L2 attacks."""

import json
import textwrap

import pytest
import torch
from conftest import error_line
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from torch import nn
from typer.testing import CliRunner

import robench
from robench.attacks import build_attack
from robench.cli import app
from robench.models.checkpoints import load_checkpoint
from robench.results import read_attack_rows

runner = CliRunner(env={"COLUMNS": "200"})
MODEL_FILE = textwrap.dedent('''\
    import torch
    from torch import nn

    def build(hidden=32):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def resnet(num_classes=10):
        import torchvision
        model = torchvision.models.resnet18(num_classes=num_classes)
        model.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
        return model

    def not_a_module():
        return 42

    def three_outputs():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    ''')


def digits(n=None):
    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]
    y = torch.tensor(data.target)
    return (x, y) if n is None else (x[-n:], y[-n:])


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A directory with mine.py (factories) and the trained weights of build() as .pt and .safetensors."""
    root = tmp_path_factory.mktemp("user")
    (root / "mine.py").write_text(MODEL_FILE)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    x, y = digits()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(80):
        loss = nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.save(model.state_dict(), root / "w.pt")
    save_file(model.state_dict(), root / "w.safetensors")
    torch.save(model, root / "pickled.pt")  # a whole pickled module: must be refused, never unpickled
    return root, model.eval()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def model_args(user, weights="w.pt", factory="build"):
    root, _ = user
    return ["--model-factory", f"{root / 'mine.py'}:{factory}", "--weights", root / weights, "--dataset", "digits"]


def test_import_model_writes_a_run_directory_with_the_models_identity(user, tmp_path):
    for weights in ("w.pt", "w.safetensors"):
        result = cli("import-model", *model_args(user, weights), "--out", tmp_path / weights)
        assert result.exit_code == 0, result.output
    metas = [json.loads((tmp_path / w / "run.json").read_text()) for w in ("w.pt", "w.safetensors")]
    assert metas[0]["origin"] == "imported" and metas[0]["factory"].endswith("mine.py:build")
    assert metas[0]["model_sha256"] == metas[1]["model_sha256"]  # the same weights, from either file kind
    assert metas[0]["weights_source_sha256"] != metas[1]["weights_source_sha256"]
    assert metas[0]["test_accuracy"] > 0.9
    assert "--trust-code" in error_line(cli("attack", "--checkpoint", tmp_path / "w.pt", "--out", tmp_path / "a.csv"))
    model, meta = load_checkpoint(tmp_path / "w.pt", trust_code=True)
    assert meta["model_sha256"] == metas[0]["model_sha256"]
    other = cli("import-model", *model_args(user), "--factory-arg", "hidden=32", "--out", tmp_path / "with-arg")
    assert other.exit_code == 0  # the same weights under other factory arguments: another model
    assert json.loads((tmp_path / "with-arg" / "run.json").read_text())["model_sha256"] != metas[0]["model_sha256"]


def test_attack_a_user_model_under_linf_and_l2_then_audit_it(user, tmp_path):
    common = [*model_args(user), "--attack", "pgd,apgd", "--eps-mode", "absolute", "--n-samples", "60", "--quiet",
              "--device", "cpu"]
    linf = cli("attack", *common, "--eps-grid", "0,8/255,16/255", "--out", tmp_path / "linf.csv")
    l2 = cli("attack", *common, "--norm", "L2", "--eps-grid", "0,0.5,1", "--out", tmp_path / "l2.csv")
    assert linf.exit_code == 0 and l2.exit_code == 0, linf.output + l2.output
    for name, norm, top in (("linf.csv", "Linf", 16 / 255), ("l2.csv", "L2", 1.0)):
        rows = [r for r in read_attack_rows(tmp_path / name) if r["attack"] != "worst"]
        assert {r["norm"] for r in rows} == {norm} and {r["attack"] for r in rows} == {"pgd", "apgd"}
        assert max(float(r["eps"]) for r in rows) == pytest.approx(top)
        assert len({r["model_sha256"] for r in rows}) == 1
    audited = cli("audit", *model_args(user), "--out", tmp_path / "audit", "--eps-mode", "absolute", "--eps-grid",
                  "0,0.1", "--n-samples", "40", "--strong-steps", "5", "--strong-restarts", "1", "--apgd-steps", "5",
                  "--square-queries", "20", "--quiet", "--device", "cpu")
    assert audited.exit_code == 0, audited.output
    report = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert report["verdict"] in ("pass", "warn", "fail") and len(report["checks"]) == 7


def test_a_torchvision_architecture_built_by_a_factory(user, tmp_path):
    root, _ = user
    import torchvision

    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    torch.save(model.state_dict(), tmp_path / "resnet.pt")
    result = cli("import-model", "--model-factory", f"{root / 'mine.py'}:resnet", "--weights", tmp_path / "resnet.pt",
                 "--dataset", "digits", "--out", tmp_path / "resnet")
    assert result.exit_code == 0, result.output
    model, meta = load_checkpoint(tmp_path / "resnet", trust_code=True)
    assert type(model).__name__ == "ResNet" and meta["num_classes"] == 10


@pytest.mark.parametrize("args, fragment", [
    (["--model-factory", "no_such_module_xyz:build"], "importing no_such_module_xyz failed: ModuleNotFoundError"),
    (["--model-factory", "{root}/mine.py:missing"], "has no function 'missing'"),
    (["--model-factory", "{root}/absent.py:build"], "absent.py is not a file"),
    (["--model-factory", "{root}/mine.py:not_a_module"], "returned a int, not a torch.nn.Module"),
    (["--model-factory", "{root}/mine.py:three_outputs"], "the weights do not fit"),
    (["--factory-arg", "hidden=16"], "the weights do not fit {root}/mine.py:build: 1.weight has shape (32, 64), the module's (16, 64)"),
    (["--weights", "{root}/pickled.pt"], "is not a plain state dict (robench never unpickles"),
    (["--weights", "{root}/mine.py"], "expected .safetensors, .pt, .pth"),
    (["--dataset", "no-such-data"], "unknown dataset 'no-such-data'"),
])
def test_user_model_errors_are_one_line(user, tmp_path, args, fragment):
    root, _ = user
    base = dict(zip(["--model-factory", "--weights", "--dataset"], [f"{root / 'mine.py'}:build", str(root / "w.pt"),
                                                                   "digits"]))
    extra = [a.replace("{root}", str(root)) for a in args]
    for flag, value in zip(extra[::2], extra[1::2]):
        base[flag] = value
    argv = [x for pair in base.items() for x in pair] + [x for flag, v in zip(extra[::2], extra[1::2])
                                                         if flag not in ("--model-factory", "--weights", "--dataset")
                                                         for x in (flag, v)]
    line = error_line(cli("import-model", *argv, "--out", tmp_path / "run"))
    assert fragment.replace("{root}", str(root)) in line
    assert not (tmp_path / "run").exists()


def test_wrong_output_count_and_partial_options_are_one_line(user, tmp_path):
    root, _ = user
    torch.save(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).state_dict(), tmp_path / "three.pt")
    line = error_line(cli("import-model", "--model-factory", f"{root / 'mine.py'}:three_outputs", "--weights",
                          tmp_path / "three.pt", "--dataset", "digits", "--out", tmp_path / "run"))
    assert "returns (1, 3) for one image, but the dataset has 10 classes" in line
    assert "missing --weights, --dataset" in error_line(cli("attack", "--model-factory", f"{root}/mine.py:build",
                                                            "--out", tmp_path / "a.csv"))


def test_native_l2_attacks_agree_with_torchattacks(user):
    import torchattacks

    _, model = user
    x, y = digits(200)
    eps = 0.6
    accuracy = lambda adv: (model(adv).argmax(1) == y).float().mean().item()
    torch.manual_seed(0)
    ours = accuracy(robench.attack(model, x, y, eps, name="pgd", norm="L2", steps=20, step_size=2.5 / 20))
    theirs = accuracy(torchattacks.PGDL2(model, eps=eps, alpha=2.5 * eps / 20, steps=20, random_start=True)(x, y))
    assert abs(ours - theirs) <= 0.02, (ours, theirs)
    torch.manual_seed(0)
    ours = accuracy(robench.attack(model, x, y, eps, name="apgd", norm="L2", steps=50))
    theirs = accuracy(torchattacks.APGD(model, norm="L2", eps=eps, steps=50, seed=0)(x, y))
    assert ours <= theirs + 1 / len(y), (ours, theirs)


def test_python_api_sweeps_and_audits_any_module(user):
    _, model = user
    x, y = digits(80)
    rows = robench.evaluate(model, x, y, attacks=("pgd", "tgsm"), eps=(0, 0.1), steps=5)
    assert set(rows.attack) == {"pgd", "tgsm", "worst"} and set(rows.norm) == {"Linf"}
    table = rows.pivot_table(index="eps", columns="attack", values="accuracy")
    assert (table["worst"] <= table[["pgd", "tgsm"]].min(axis=1) + 1e-12).all()
    assert rows.model_sha256.nunique() == 1 and rows.images_sha256.nunique() == 1
    report, audit_rows = robench.audit(model, x[:40], y[:40], eps=0.1, strong_steps=5, strong_restarts=1,
                                       apgd_steps=5, square_queries=20)
    assert len(report["checks"]) == 7 and report["worst"] <= report["clean_accuracy"]
    assert (audit_rows.attack == "worst").any()
    adv = robench.attack(model, x, y, torch.full((len(x),), 0.5), name="apgd", norm="L2", steps=10)
    assert ((adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()
    with pytest.raises(robench.errors.RobenchError, match="does not take"):
        robench.attack(model, x, y, 0.1, name="tgsm", restarts=3)
    assert build_attack("pgd", norm="L2").settings()["norm"] == "L2"
