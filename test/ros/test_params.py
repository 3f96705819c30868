"""config/*.yaml and the node's declared parameters agree."""

import yaml

from da3_ros.ros.params import PARAMETERS


def load(repo_root, name):
    with open(repo_root / "config" / name) as f:
        return yaml.safe_load(f)["/**"]["ros__parameters"]


def test_live_yaml_lists_every_parameter_with_its_default(repo_root):
    values = load(repo_root, "live.yaml")
    assert set(values) == set(PARAMETERS), set(values) ^ set(PARAMETERS)
    for name, spec in PARAMETERS.items():
        assert values[name] == spec.default, f"{name}: live.yaml {values[name]!r} != declared {spec.default!r}"


def test_jetson_yaml_uses_known_parameters_within_range(repo_root):
    for name, value in load(repo_root, "jetson.yaml").items():
        spec = PARAMETERS[name]
        assert type(value) is type(spec.default), name
        if spec.choices:
            assert value in spec.choices, name
        if spec.range:
            assert spec.range[0] <= value <= spec.range[1], name


def test_readme_parameter_table_is_the_declared_one(repo_root):
    """Every row as PARAMETERS declares it (regenerate: python -m da3_ros.ros.params)."""
    from da3_ros.ros.params import readme_rows

    text = (repo_root / "README.md").read_text().splitlines()
    missing = [row for row in readme_rows() if row not in text]
    assert not missing, "README.md parameter table differs from the declared parameters:\n" + "\n".join(missing)


def test_readme_output_table_is_the_declared_one(repo_root):
    """Every output row as ros/outputs.py declares it (regenerate: python -m da3_ros.ros.outputs)."""
    from da3_ros.ros.outputs import readme_rows

    text = (repo_root / "README.md").read_text().splitlines()
    missing = [row for row in readme_rows() if row not in text]
    assert not missing, "README.md output table differs from ros/outputs.py:\n" + "\n".join(missing)


def test_default_process_res_is_the_checkpoints_own():
    """process_res at its default reaches the factory as "the checkpoint's own" (DA3: 504,
    the embedded da3-tiny: 252); any other value reaches it as set (and is refused by a
    model that cannot run at it)."""
    from da3_ros.ros.params import default_config, model_settings

    assert model_settings(default_config()).process_res is None
    assert model_settings(default_config(process_res=336)).process_res == 336
