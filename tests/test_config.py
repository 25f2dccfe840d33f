import pytest
import yaml
from omegaconf import OmegaConf

from restorekit.config import apply_overrides, load_config, load_yaml, save_config
from restorekit.errors import ConfigError


def write(path, data):
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "base").mkdir()
    write(tmp_path / "base" / "a.yaml", {"exp": {"name": "a", "seed": 1}, "trainer": {"args": {"lr": 0.1, "max_steps": 10}}, "order": ["a"]})
    write(tmp_path / "base" / "b.yaml", {"exp": {"seed": 2}, "trainer": {"args": {"lr": 0.2}}, "order": ["b"]})
    write(tmp_path / "child.yaml", {"inherit": ["base/a.yaml", "base/b.yaml"], "exp": {"name": "child"}, "data": {"sr": 16000, "mirror": "${data.sr}"}})
    return tmp_path


def test_merge_order_parents_in_list_order_then_file_then_cli(tree):
    cfg = load_config([f"exp.config_path={tree / 'child.yaml'}", "trainer.args.max_steps=5", "exp.seed=3"])
    assert cfg.exp.name == "child"          # file beats parents
    assert cfg.trainer.args.lr == 0.2       # later parent beats earlier
    assert cfg.order == ["b"]               # lists are replaced, not concatenated
    assert cfg.trainer.args.max_steps == 5  # CLI beats everything
    assert cfg.exp.seed == 3
    assert "inherit" not in cfg
    assert cfg.exp.config_path == str(tree / "child.yaml")


def test_interpolation_and_typed_override_values(tree):
    cfg = load_config([f"exp.config_path={tree / 'child.yaml'}", "data.sr=24000", "trainer.args.lr=1e-4", "+exp.tags=[a,b]", "+exp.flag=true"])
    assert cfg.data.mirror == 24000
    assert cfg.trainer.args.lr == pytest.approx(1e-4) and isinstance(cfg.trainer.args.lr, float)
    assert list(cfg.exp.tags) == ["a", "b"] and cfg.exp.flag is True


def test_nested_inherit_is_relative_to_each_file(tmp_path):
    (tmp_path / "x" / "y").mkdir(parents=True)
    write(tmp_path / "x" / "y" / "leaf.yaml", {"v": 1, "w": 1})
    write(tmp_path / "x" / "mid.yaml", {"inherit": "y/leaf.yaml", "w": 2})
    write(tmp_path / "top.yaml", {"inherit": ["x/mid.yaml"]})
    cfg = load_yaml(tmp_path / "top.yaml")
    assert (cfg.v, cfg.w) == (1, 2)


def test_inherit_cycle_is_reported_with_the_chain(tmp_path):
    write(tmp_path / "a.yaml", {"inherit": ["b.yaml"]})
    write(tmp_path / "b.yaml", {"inherit": ["a.yaml"]})
    with pytest.raises(ConfigError, match=r"inherit cycle: a\.yaml -> b\.yaml -> a\.yaml"):
        load_yaml(tmp_path / "a.yaml")


def test_missing_parent_names_the_child(tmp_path):
    write(tmp_path / "a.yaml", {"inherit": ["nope.yaml"]})
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml \(inherited by .*a\.yaml\)"):
        load_yaml(tmp_path / "a.yaml")


def test_typo_override_is_rejected_with_suggestion(tree):
    with pytest.raises(ConfigError, match=r"override 'trainer\.args\.max_step=5': key 'trainer\.args\.max_step' does not exist in the config\. Did you mean 'trainer\.args\.max_steps'\? Prefix it with '\+'"):
        load_config([f"exp.config_path={tree / 'child.yaml'}", "trainer.args.max_step=5"])


def test_plus_adds_a_key_and_bad_syntax_is_an_error(tree):
    cfg = OmegaConf.create({"a": {"b": 1}})
    apply_overrides(cfg, ["+a.c.d=7"])
    assert cfg.a.c.d == 7
    with pytest.raises(ConfigError, match=r"override 'a\.b' is not of the form key=value"):
        apply_overrides(cfg, ["a.b"])


def test_required_values_must_be_set(tmp_path):
    write(tmp_path / "r.yaml", {"data": {"root": "???"}})
    with pytest.raises(ConfigError, match=r"required config values are not set: data\.root"):
        load_config([f"exp.config_path={tmp_path / 'r.yaml'}"])
    assert load_config([f"exp.config_path={tmp_path / 'r.yaml'}", "data.root=/x"]).data.root == "/x"


def test_no_config_path_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"no config given: pass exp\.config_path="):
        load_config([])
    write(tmp_path / "bad.yaml", "a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: cannot be read as YAML"):
        load_yaml(tmp_path / "bad.yaml")


def test_save_config_writes_the_resolved_config(tree, tmp_path):
    cfg = load_config([f"exp.config_path={tree / 'child.yaml'}"])
    out = save_config(cfg, tmp_path / "run")
    assert out == tmp_path / "run" / "config.yaml"
    again = yaml.safe_load(out.read_text())
    assert again["data"]["mirror"] == 16000 and again["exp"]["name"] == "child"
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["config.yaml"]  # no temp files left
