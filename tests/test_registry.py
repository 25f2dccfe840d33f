import re

import pytest
from omegaconf import OmegaConf

from restorekit.errors import ConfigError, RegistryError
from restorekit.registry import Registry


@pytest.fixture
def reg() -> Registry:
    r = Registry("widgets")

    @r.register("gain_widget")
    class GainWidget:
        """Multiplies by a gain (linear)."""

        def __init__(self, gain: float, offset: float = 0.0) -> None:
            self.gain, self.offset = gain, offset

    @r.register("free_widget")
    def free_widget(**kwargs):
        """Accepts anything."""
        return kwargs

    return r


def test_build_from_plain_and_omegaconf_nodes(reg):
    w = reg.build({"name": "gain_widget", "args": {"gain": 2.0}}, where="models.w")
    assert (w.gain, w.offset) == (2.0, 0.0)
    w2 = reg.build(OmegaConf.create({"name": "gain_widget", "args": {"gain": 3, "offset": 1}}), where="x")
    assert (w2.gain, w2.offset) == (3, 1)
    assert isinstance(w2.gain, int)  # plain values, not OmegaConf nodes


def test_build_resolves_interpolations_in_omegaconf_args(reg):
    cfg = OmegaConf.create({"rate": 2.5, "w": {"name": "gain_widget", "args": {"gain": "${rate}"}}})
    assert reg.build(cfg.w, where="w").gain == 2.5


def test_injected_args_and_var_kwargs(reg):
    assert reg.build({"name": "gain_widget"}, where="w", gain=4.0).gain == 4.0
    assert reg.build({"name": "free_widget", "args": {"anything": 1}}, where="w") == {"anything": 1}


def test_unknown_name_suggests_closest_and_lists_all(reg):
    with pytest.raises(RegistryError, match=r"unknown widgets 'gain_widgt' at models\.vocoder\.name\. Did you mean 'gain_widget'\? Registered widgets: free_widget, gain_widget"):
        reg.build({"name": "gain_widgt"}, where="models.vocoder")


def test_unknown_argument_names_config_path_and_accepted(reg):
    with pytest.raises(ConfigError, match=re.escape("models.w.args.gian: widgets 'gain_widget' has no argument 'gian'. Did you mean 'gain'? Accepted arguments: gain: float, offset: float = 0.0")):
        reg.build({"name": "gain_widget", "args": {"gian": 1.0}}, where="models.w")


def test_missing_argument_names_config_path(reg):
    with pytest.raises(ConfigError, match=r"models\.w\.args\.gain is required by widgets 'gain_widget' but missing"):
        reg.build({"name": "gain_widget", "args": {"offset": 1.0}}, where="models.w")


def test_unknown_node_key_is_rejected_unless_declared_extra(reg):
    with pytest.raises(ConfigError, match=r"losses\.0 has unknown key 'weight'.*constructor arguments go under losses\.0\.args"):
        reg.build({"name": "gain_widget", "weight": 2, "args": {"gain": 1}}, where="losses.0")
    assert reg.build({"name": "gain_widget", "weight": 2, "args": {"gain": 1}}, where="losses.0", extra_keys=("weight",)).gain == 1


def test_node_must_be_mapping_and_name_required(reg):
    with pytest.raises(ConfigError, match=r"w must be a mapping like \{name: <widgets name>"):
        reg.build([1, 2], where="w")
    with pytest.raises(ConfigError, match=r"w\.name is missing"):
        reg.build({"args": {}}, where="w")


def test_duplicate_name_says_where_the_first_lives(reg):
    with pytest.raises(RegistryError, match=r"widgets 'gain_widget' is registered twice: first by .*GainWidget \(.*test_registry\.py:\d+\).*rename one"):
        @reg.register("gain_widget")
        class Other:
            pass


@pytest.mark.parametrize("bad", ["CamelCase", "with-dash", "1start", ""])
def test_names_must_be_snake_case(reg, bad):
    with pytest.raises(RegistryError, match="lowercase snake_case"):
        reg.register(bad)


def test_describe_lists_args_defaults_and_summary(reg):
    text = reg.describe()
    assert text.splitlines()[0] == "widgets (2)"
    assert "  gain_widget: Multiplies by a gain (linear)." in text
    assert "      gain: float" in text and "      offset: float = 0.0" in text
