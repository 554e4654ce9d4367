import pytest
import torch

from gankit import config as C
from gankit.data.dataset import to_float, to_uint8
from gankit.errors import GankitError
from gankit.train.build import value_range
from tests.helpers import UNCLUSTERED


@pytest.mark.parametrize("name", C.preset_names())
def test_presets_build_and_round_trip(name):
    cfg = C.build(name)
    assert cfg.description, f"preset {name} needs a description"
    text = C.dumps(cfg)
    again = C.validate(C.from_dict(C.Config, C.parse_toml(text, source="x"), where=""))
    assert again == cfg


def test_unknown_key_did_you_mean():
    with pytest.raises(GankitError, match=r"unknown setting 'train.stpes'.*did you mean 'steps'"):
        C.build("seed002-mlp-mnist", overrides=["train.stpes=5"])


def test_unknown_net_param_did_you_mean():
    # refused when the config is built, before any data is loaded or any run folder is made
    with pytest.raises(GankitError, match="did you mean 'hidden'"):
        C.build("seed002-mlp-mnist", overrides=["model.g.hiden=[8]"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.steps='many'", "expected int"),
        ("train.steps=0", "must be positive"),
        ("optim.g.lr=-1", "must be positive"),
        ("data.sampler='shufle'", "did you mean 'shuffle'"),
        ("loss.name='hnige'", "did you mean 'hinge'"),
        ("data.dataset='fashion'", "unknown dataset"),
        ("model.noise='gaussian'", "model.noise"),
        ("optim.d.betas=[0.5]", "two numbers"),
        ("data=3", "expected a table"),
        ("model.pack=0", "model.pack must be >= 1"),
        ("loss.topk=0", r"loss.topk must be in \(0, 1\]"),
        ("loss.topk_gamma=1.5", r"loss.topk_gamma must be in \(0, 1\]"),
        ("model.pack=3", "data.batch_size = 32 is not a multiple of model.pack = 3"),
        ("model.image_range=[1, 0]", r"model.image_range must be \[low, high\] with low < high"),
        ("model.image_range=[0, 1, 2]", "model.image_range must be"),
        ("optim.g.linear_decay=[100, 50]", r"optim.g.linear_decay must be \[start, end\] steps"),
        ("optim.d.linear_decay=[100]", "optim.d.linear_decay must be"),
        ("optim.g.lr_final=1.5", r"optim.g.lr_final must be a fraction of lr in \[0, 1\]"),
        ("train.reuse_fakes=true", "train.reuse_fakes needs train.fakes_for_d = 'train'"),  # seed 002: eval
        # one forward pass of G: 1,000,000 was killed by the kernel at 24 GB, with no message
        ("train.sample_grid=1000000", "train.sample_grid must be at most 4,096 .*got 1,000,000; `gankit sample"),
    ],
)
def test_bad_values(override, message):
    with pytest.raises(GankitError, match=message):
        C.build("seed002-mlp-mnist", overrides=[override])


@pytest.mark.parametrize("overrides, message", [
    # settings that did nothing: the thresholds schedule makes one update at a time; LSGAN has no probabilities
    (["schedule.name='thresholds'", "schedule.d_steps=3"], "d_steps = 3, g_steps = 1 would do nothing"),
    (["loss.name='lsgan'", "loss.clip_eps=0.01"], "'lsgan' has no probabilities to clip"),
])
def test_settings_that_would_do_nothing_are_refused(overrides, message):
    with pytest.raises(GankitError, match=message):
        C.build("seed002-mlp-mnist", overrides=overrides)


def test_reuse_fakes_needs_one_batch_size():
    with pytest.raises(GankitError, match="train.reuse_fakes needs G's batch to be D's"):
        C.build("mnist-best", overrides=["train.reuse_fakes=true", "train.g_batch_size=32"])
    assert C.build("mnist-best", overrides=["train.reuse_fakes=true", "train.g_batch_size=64"]).train.reuse_fakes


def test_image_range_overrides_the_output_range():
    printed = C.build("seed004-dcgan-ships")  # the seed's [0, 1] under G's tanh
    assert printed.model.output == "tanh" and value_range(printed.model) == (0.0, 1.0)
    assert value_range(C.build("seed004-dcgan-ships", overrides=["model.image_range=[-1, 1]"]).model) == (-1, 1)
    assert value_range(C.build("seed002-mlp-mnist").model) == (-1.0, 1.0)  # unset: the output's range

    px = torch.tensor([0, 128, 255], dtype=torch.uint8)
    assert torch.allclose(to_float(px, value_range=value_range(printed.model)), px.float() / 255)
    # G's tanh can go below the data's 0: shown as black, as a uint8 image must
    assert to_uint8(torch.tensor([-0.7, 0.5, 1.0]), value_range=(0.0, 1.0)).tolist() == [0, 128, 255]


def test_override_parsing():
    assert C.parse_override("a.b=3") == (["a", "b"], C.Override("3", 3))
    keys, value = C.parse_override("data.dataset=cifar10:ship")  # not TOML: its text
    assert keys == ["data", "dataset"] and value.guess() == "cifar10:ship" and value.error
    assert C.parse_override("x=[1, 2]")[1].value == [1, 2]
    with pytest.raises(GankitError, match="key=value"):
        C.parse_override("novalue")
    with pytest.raises(GankitError, match="key=value"):
        C.parse_override("train..steps=3")


@pytest.mark.parametrize(
    "override, message",
    [
        # values that are not TOML are refused with TOML's reason, not taken as text that fails as "expected float"
        ("optim.g.lr=.001", r"optim.g.lr = '.001' is not a valid value .*a digit before the point"),
        ("model.image_range=[0, 1", r"model.image_range = '\[0, 1' is not a valid value"),
        ("train.steps=05", "train.steps = '05' is not a valid value"),
        # a text setting takes the text, whatever TOML would read it as
    ],
)
def test_override_values_that_are_not_toml(override, message):
    with pytest.raises(GankitError, match=message):
        C.build("seed002-mlp-mnist", overrides=[override])


def test_text_settings_take_the_text_typed():
    cfg = C.build("seed002-mlp-mnist", overrides=["name=2024-01-01", "description=05", "data.dataset=mnist",
                                                   "train.tensorboard=auto"])
    assert (cfg.name, cfg.description, cfg.data.dataset, cfg.train.tensorboard) == ("2024-01-01", "05", "mnist", "auto")
    cfg = C.build("seed002-mlp-mnist", overrides=["name=\"quoted\"", "train.tensorboard=false"])
    assert cfg.train.tensorboard is False
    assert C.build("seed002-mlp-mnist", overrides=["name=\"quoted\""]).name == "quoted"


def test_net_settings_are_type_checked():
    # a string is never a bool ("False" is truthy in Python), a float never a channel count
    for override, message in [("model.g.batch_norm=False", r"model.g.batch_norm: expected bool, got 'False'"),
                              ("model.g.batch_norm=no", r"model.g.batch_norm: expected bool, got 'no'"),
                              ("model.d.leak=abc", r"model.d.leak: expected float, got 'abc'"),
                              ("model.g.hidden=[256.5]", r"model.g.hidden\[0\]: expected int"),
                              ("model.g.hidden=256", r"model.g.hidden: expected a list")]:
        with pytest.raises(GankitError, match=message):
            C.build("seed002-mlp-mnist", overrides=[override])
    with pytest.raises(GankitError, match=r"model.g.width: expected int, got 32.0"):
        C.build("mnist-best", overrides=["model.g.width=32.0"])
    with pytest.raises(GankitError, match=r"model.d.sn: expected bool, got 'false'"):
        C.build("mnist-best", overrides=["model.d.sn='false'"])
    assert C.build("mnist-best", overrides=["model.d.leak=0"]).model.d.params["leak"] == 0.0  # an int is a float


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.g.bn_eps=-1", "bn_eps must be positive"),
        ("model.g.bn_momentum=5", r"bn_momentum must be in \[0, 1\]"),
        ("model.d.dropout=1", r"dropout must be in \[0, 1\)"),
        ("model.d.leak=-0.2", r"leak must be in \[0, 1\]"),
    ],
)
def test_net_setting_ranges(override, message):
    cfg = C.build("seed002-mlp-mnist", overrides=[override])  # the net's own checks: when it is built
    from gankit.nets import build_nets

    with pytest.raises(GankitError, match=message):
        build_nets(cfg.model, image_shape=(1, 28, 28), num_classes=10)


def test_params_table_and_inline_settings():
    # --set model.g.params.width=64 is model.g.width (it used to be dropped under the preset's inline width)
    assert C.build("mnist-best", overrides=["model.g.params.width=48"]).model.g.params["width"] == 48
    text = '[model.g]\narch = "dcgan"\nwidth = 32\n[model.g.params]\nwidth = 64\n'
    with pytest.raises(GankitError, match=r"model.g.width is given twice, as model.g.width = 32 and as "
                                          r"model.g.params.width = 64"):
        C.from_dict(C.Config, C.parse_toml(text, source="x"), where="")


def test_setting_in_the_wrong_section():
    with pytest.raises(GankitError, match=r"unknown setting 'train.batch_size' \(did you mean data.batch_size\?\)"):
        C.build("seed002-mlp-mnist", overrides=["train.batch_size=32"])
    with pytest.raises(GankitError, match=r"unknown setting 'steps' \(did you mean train.steps\?\); known at the "
                                          "top level: name"):
        C.build("seed002-mlp-mnist", overrides=["steps=32"])
    with pytest.raises(GankitError, match=r"'loss.ema_decay' \(did you mean model.ema or optim.g.decay"):
        C.build("seed002-mlp-mnist", overrides=["loss.ema_decay=0.9"])
    with pytest.raises(GankitError, match=r"'train.linear_decay' \(did you mean optim.g.linear_decay or "
                                          r"optim.d.linear_decay\?\)"):
        C.build("seed002-mlp-mnist", overrides=["train.linear_decay=[1, 2]"])


def test_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[train]\nstepz = 3\n")
    with pytest.raises(GankitError, match=rf"^{tmp_path}/exp.toml: unknown setting 'train.stepz' \(did you mean"):
        C.build(file=path)
    with pytest.raises(GankitError, match="--config is empty"):
        C.build(file="")
    path.write_text("[train]\nsteps = 3\n")
    with pytest.raises(GankitError, match=r"^train.steps = .many. is not a valid"):  # the --set's error, not the file's
        C.build(file=path, overrides=["train.steps=many"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.d.alpha=1.5", r"optim.d.alpha \(rmsprop's rho\) must be in \[0, 1\)"),
        ("optim.g.momentum=5", r"optim.g.momentum must be in \[0, 1\)"),
        ("optim.g.betas=[0.9, 0.99]", "optim.g.betas = \\[0.9, 0.99\\] does nothing for optim.g.name = 'sgd'"),
        ("optim.d.lr_final=0.1", "optim.d.lr_final = 0.1 is where optim.d.linear_decay ends, and linear_decay is off"),
        ("loss.r1_every=4", "loss.r1_every = 4 spaces out the R1 penalty, and loss.r1_gamma = 0 has none"),
        ("model.ema_start=100", "model.ema_start = 100 shapes G's weight average, and model.ema = 0 keeps none"),
        ("loss.topk_gamma=0.9", "loss.topk_gamma = 0.9 shrinks"),
    ],
)
def test_settings_that_would_do_nothing_or_diverge(override, message, tmp_path):
    with pytest.raises(GankitError, match=message):
        C.build("seed002-mlp-mnist", overrides=[override])
    assert C.build("seed002-mlp-mnist", overrides=["optim.g.momentum=0.9"]).optim.g.momentum == 0.9
    if "must be in" not in message:
        # only what the user typed is checked: a run's own config.toml with it (an older gankit wrote them)
        # still loads and resumes, and so does a preset whose settings a switched optimizer ignores
        path = tmp_path / "config.toml"
        data = C.apply_overrides(C.preset_dict("seed002-mlp-mnist"), [override])
        path.write_text(__import__("tomli_w").dumps(C.to_dict(C.validate(C.from_dict(C.Config, data, where="")))))
        assert C.load_file(path) == C.build(file=path, run_config=True)
        with pytest.raises(GankitError, match=f"^{path}: .*{message}"):  # the user's own --config: typed by them
            C.build(file=path)


def test_switching_a_presets_optimizer_leaves_its_other_settings_alone():
    assert C.build("mnist-best", overrides=["optim.d.name=sgd"]).optim.d.betas == [0.0, 0.99]  # unused, kept
    assert C.build("seed001-dcgan-mnist", overrides=["optim.g.name=adam"]).optim.g.name == "adam"
    with pytest.raises(GankitError, match=r"optim.d.betas = \[0.5, 0.9\] does nothing for optim.d.name = 'sgd'"):
        C.build("mnist-best", overrides=["optim.d.name=sgd", "optim.d.betas=[0.5, 0.9]"])


def test_switching_the_arch_alone_names_the_settings_it_kept():
    with pytest.raises(GankitError, match=r"unknown setting model.g.hidden for generator 'dcgan'; it takes: .* "
                                          r"\(hidden is 'mlp''s: a --set of model.g.arch keeps the table's other "
                                          r"settings; give it whole instead, --set 'model.g=\{arch=\"dcgan\"\}'\)"):
        C.build("seed002-mlp-mnist", overrides=["model.g.arch=dcgan"])
    assert C.build("seed002-mlp-mnist", overrides=['model.g={arch="dcgan"}']).model.g.params == {}


def test_set_a_whole_table_then_one_of_its_keys():
    cfg = C.build("mnist-best", overrides=['model.g={arch="dcgan"}', "model.g.width=32", 'data={dataset="mnist"}',
                                           "data.limit=100"])
    assert cfg.model.g.params == {"width": 32} and (cfg.data.dataset, cfg.data.limit) == ("mnist", 100)
    with pytest.raises(GankitError, match=r"--set train.steps.x=1: train.steps is a value, not a table"):
        C.build("mnist-best", overrides=["train.steps.x=1"])
    with pytest.raises(GankitError, match=r"model.g.params: expected a table of settings, got \[1\]$"):
        C.build("mnist-best", overrides=["model.g.params=[1]"])


def test_a_params_table_setting_is_replaced_by_a_set(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[model.g]\narch = "dcgan"\n[model.g.params]\nwidth = 64\n[model.d]\narch = "dcgan"\n')
    for key in ("model.g.width", "model.g.params.width"):
        assert C.build(file=path, overrides=[f"{key}=48"]).model.g.params == {"width": 48}


@pytest.mark.parametrize("override, hint", [
    ("train.deterministic=True", "booleans are written true or false"),
    ("data.verify=no", "booleans are written true or false"),
    ("train.threads=None", "a --set cannot unset a setting"),
    ("train.eval_every=", r"is not a valid value \(Invalid value\); a --set cannot unset"),
])
def test_set_value_hints(override, hint):
    with pytest.raises(GankitError, match=hint):
        C.build("seed002-mlp-mnist", overrides=[override])


def test_unknown_preset_and_bad_toml(tmp_path):
    with pytest.raises(GankitError, match="unknown preset 'seed002-mlp-mnst'.*did you mean"):
        C.build("seed002-mlp-mnst")
    bad = tmp_path / "c.toml"
    bad.write_text("[train\nsteps = 3")
    with pytest.raises(GankitError, match="invalid TOML"):
        C.load_file(bad)


def test_preset_inheritance():
    base, child = C.build("seed002-mlp-mnist"), C.build("seed002-mlp-fashion")
    assert child.data.dataset == "fashion-mnist" and child.model == base.model and child.optim == base.optim


def test_config_file_round_trip(tmp_path):
    cfg = C.build("seed003-cgan-mnist", overrides=["train.steps=7"])
    path = tmp_path / "mine.toml"
    path.write_text(C.dumps(cfg))
    assert C.build(file=path) == cfg
    with pytest.raises(GankitError, match="not both"):
        C.build("seed002-mlp-mnist", file=path)


def test_pack_errors():
    with pytest.raises(GankitError, match="unconditional"):
        C.build("seed003-cgan-mnist", overrides=["model.pack=2"])
    # seed 000's threshold schedule judges held-out batches of val_size fakes and val_size / 2 reals
    with pytest.raises(GankitError, match=r"schedule.val_size / 2 = 3 is not a multiple of model.pack = 2"):
        C.build("seed000-dcgan-letters", overrides=["model.pack=2", "schedule.val_size=6"])
    C.build("mnist-best", overrides=[*UNCLUSTERED, "model.pack=2", "schedule.val_size=6"])  # no held-out batches: fine
